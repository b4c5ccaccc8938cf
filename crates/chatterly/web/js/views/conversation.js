// The open conversation: header (calls, members), history with infinite
// scroll upward, who is typing, and the composer.

import * as actions from "../actions.js";
import * as api from "../api.js";
import * as calls from "../calls.js";
import { h, icon, replace } from "../dom.js";
import { conversationTitle, directPeer, displayName } from "../format.js";
import { on, state, timeline } from "../state.js";
import { composer } from "./composer.js";
import { messageElement, messageList, showFound } from "./messages.js";

const LOAD_OLDER_WITHIN_PX = 400;
const AT_BOTTOM_PX = 48;

export function typingText(conversationId) {
  const people = [...(state.typing.get(conversationId)?.values() || [])].map((t) => t.name);
  if (people.length === 0) return "";
  if (people.length === 1) return `${people[0]} is typing…`;
  if (people.length === 2) return `${people[0]} and ${people[1]} are typing…`;
  return "Several people are typing…";
}

/** Renders the conversation `id` into `root`; returns a cleanup function. */
export function renderConversation(root, id, { back }) {
  const conversation = state.conversations.get(id);
  const title = conversationTitle(conversation, state.me);
  const off = [];

  // ---- header ----
  const subtitle = h("p.subtitle");
  const membersButton = h(
    "button.icon-button",
    {
      type: "button",
      "aria-label": "Members",
      title: "Members",
      "aria-expanded": "false",
      onclick: () => (state.panel === "members" ? actions.closePanel() : actions.openMembers()),
    },
    icon("users"),
  );
  const callButtons = [
    h(
      "button.icon-button",
      { type: "button", "aria-label": "Start audio call", title: "Audio call", onclick: () => calls.startCall(id, "audio") },
      icon("phone"),
    ),
    h(
      "button.icon-button",
      { type: "button", "aria-label": "Start video call", title: "Video call", onclick: () => calls.startCall(id, "video") },
      icon("video"),
    ),
  ];
  const header = h(
    "header.conversation-header",
    {},
    h("button.icon-button.back", { type: "button", "aria-label": "Back to conversations", onclick: back }, icon("back")),
    h("div.titles", {}, h("h2", { id: "conversation-title" }, title), subtitle),
    h("div.tools", {}, callButtons, membersButton),
  );

  const banner = h("div.call-banner", { hidden: true });

  // ---- history ----
  // "New messages" sits after what was read when the conversation was
  // opened (or, if it was open unseen, when the first message came in).
  let readMark = conversation.unread_count > 0 ? conversation.last_read_seq : null;
  const list = messageList({
    conversationId: id,
    filter: (m, t) => !m.parent_message_id || !t.get(m.parent_message_id),
    label: `Messages in ${title}`,
    readMark: () => readMark,
  });
  const older = h("p.older", { role: "status" });
  const jump = h(
    "button.jump",
    { type: "button", hidden: true, onclick: () => scrollToBottom(true) },
    icon("down"),
    "New messages",
  );
  const scroller = h(
    "div.scroller",
    { tabindex: "0", role: "region", "aria-label": `History of ${title}` },
    older,
    list.el,
  );
  const typing = h("p.typing", {});
  const historyBox = h("div.history", {}, scroller, jump);
  const box = composer({
    dropZones: [historyBox],
    conversationId: id,
    label: conversation.conversation_type === "channel" ? `Message #${title}` : `Message ${title}`,
    onArrowUp: () => list.editLast(),
    onSent: () => scrollToBottom(true),
  });

  replace(
    root,
    header,
    banner,
    historyBox,
    typing,
    box.el,
  );
  root.setAttribute("aria-labelledby", "conversation-title");

  // ---- behaviour ----
  function atBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < AT_BOTTOM_PX;
  }

  function scrollToBottom(force) {
    if (force || atBottom()) scroller.scrollTop = scroller.scrollHeight;
    jump.hidden = true;
  }

  /** The first visible message and where it is, to keep it there while the
   *  list changes (by key: the element itself may be rebuilt). */
  function anchor() {
    const top = scroller.getBoundingClientRect().top;
    for (const el of list.el.children) {
      const box = el.getBoundingClientRect();
      if (box.bottom > top) return { key: el.dataset.key, offset: box.top - top };
    }
    return null;
  }

  let first = true;
  function render() {
    const t = timeline(id);
    const stick = first || atBottom();
    const before = stick ? null : anchor();
    const lastKey = list.el.lastElementChild?.dataset.key;
    list.render();
    if (stick) {
      scroller.scrollTop = scroller.scrollHeight;
      // Opening: show the first unread message rather than the last.
      const divider = first && t.loaded && list.el.querySelector(".new-divider");
      const above = divider ? divider.getBoundingClientRect().top - scroller.getBoundingClientRect().top : 0;
      if (above < 0) scroller.scrollTop += above - 8;
    } else if (before) {
      const el = list.el.querySelector(`[data-key="${CSS.escape(before.key)}"]`);
      if (el) scroller.scrollTop += el.getBoundingClientRect().top - scroller.getBoundingClientRect().top - before.offset;
      if (list.el.lastElementChild?.dataset.key !== lastKey) jump.hidden = false;
    }
    if (t.loaded) first = false;
    renderOlder();
    // Keep loading while the top is in view (a short page, or a fast scroll).
    if (t.loaded && t.hasOlder && scroller.clientHeight > 0 && scroller.scrollTop < LOAD_OLDER_WITHIN_PX) loadOlder();
  }

  function renderOlder() {
    const t = timeline(id);
    older.textContent = !t.loaded
      ? "Loading messages…"
      : t.loadingOlder
        ? "Loading older messages…"
        : t.hasOlder
          ? ""
          : `This is the start of ${title}.`;
  }

  function loadOlder() {
    actions.loadOlder(id);
  }

  scroller.addEventListener("scroll", () => {
    if (scroller.scrollTop < LOAD_OLDER_WITHIN_PX) loadOlder();
    if (atBottom()) jump.hidden = true;
  });

  function renderHeader() {
    const c = state.conversations.get(id);
    if (!c) return;
    const peer = directPeer(c, state.me);
    if (peer) {
      const online = state.online.has(peer.id);
      replace(subtitle, h(`span.dot${online ? ".online" : ""}`, { "aria-hidden": "true" }), online ? "Online" : "Offline");
    } else {
      const online = c.members.filter((m) => state.online.has(m.id)).length;
      const kind = c.conversation_type === "channel" ? "Channel" : "Group";
      subtitle.textContent = `${kind} · ${c.member_count} ${c.member_count === 1 ? "member" : "members"} · ${online} online`;
    }
    membersButton.setAttribute("aria-expanded", String(state.panel === "members"));
    const busy = Boolean(calls.current);
    for (const button of callButtons) button.disabled = busy;
  }

  function renderTyping() {
    typing.textContent = typingText(id);
  }

  // An active call here that we are not in (a group call we can join).
  let activeCall = null;
  async function checkActiveCall() {
    const c = state.conversations.get(id);
    if (!c || c.conversation_type === "direct") return;
    try {
      activeCall = await api.activeCall(id);
    } catch {
      activeCall = null;
    }
    renderBanner();
  }

  function renderBanner() {
    const show = activeCall && calls.current?.id !== activeCall.id;
    banner.hidden = !show;
    if (!show) return;
    replace(
      banner,
      icon(activeCall.call_type === "video" ? "video" : "phone"),
      h("span", {}, `A ${activeCall.call_type} call is in progress with ${activeCall.participants.map(displayName).join(", ")}`),
      h("button.primary.small", { type: "button", onclick: () => calls.join(id, activeCall.id, activeCall.call_type) }, "Join"),
    );
  }

  // A message found by search: shown here, or (a thread reply) its parent
  // is scrolled to while the thread panel shows the reply.
  function reveal() {
    const jump = state.jump;
    if (!jump || jump.conversationId !== id) return;
    const el = messageElement(list.el, jump.threadId || jump.messageId);
    if (!el) return;
    if (jump.threadId) {
      el.scrollIntoView({ block: "center" });
      return;
    }
    state.jump = null;
    showFound(el);
  }

  off.push(on("jump", reveal));
  off.push(on("timeline", (cid) => cid === id && render()));
  off.push(on("receipts", (cid) => cid === id && render()));
  off.push(
    on("conversations", () => {
      const c = state.conversations.get(id);
      if (readMark !== null || !c?.unread_count || actions.looking()) return;
      readMark = c.last_read_seq;
      render();
    }),
  );
  off.push(on("timeline-loading", (cid) => cid === id && renderOlder()));
  off.push(on("typing", (cid) => cid === id && renderTyping()));
  off.push(on("presence", renderHeader));
  off.push(on("conversations", renderHeader));
  off.push(on("panel", renderHeader));
  off.push(
    on("call", () => {
      renderHeader();
      if (activeCall && !calls.current) checkActiveCall();
      else renderBanner();
    }),
  );
  const resize = new ResizeObserver(() => first && render());
  resize.observe(scroller);

  renderHeader();
  renderTyping();
  render();
  checkActiveCall();
  box.focus();

  return () => {
    for (const stop of off) stop();
    resize.disconnect();
    actions.stopComposing(id);
  };
}
