// A thread in the side panel: the parent message, its replies, a composer
// that replies to it.

import * as actions from "../actions.js";
import { h, icon, replace } from "../dom.js";
import { on, state, timeline } from "../state.js";
import { composer } from "./composer.js";
import { messageElement, messageList, showFound } from "./messages.js";

const MAX_PAGES_TO_FIND_PARENT = 20;

export function renderThread(root, conversationId, parentId) {
  const off = [];
  const list = messageList({
    conversationId,
    inThread: true,
    filter: (m) => m.id === parentId || m.parent_message_id === parentId,
    label: "Thread",
  });
  const status = h("p.older", { role: "status" });
  const scroller = h("div.scroller", { tabindex: "0", role: "region", "aria-label": "Thread messages" }, status, list.el);
  const box = composer({ conversationId, label: "Reply in thread", parentId, onSent: () => bottom(), dropZones: [scroller] });
  replace(
    root,
    h(
      "header.panel-header",
      {},
      h("h2", { id: "panel-title" }, "Thread"),
      h("button.icon-button", { type: "button", "aria-label": "Close thread", onclick: actions.closePanel }, icon("close")),
    ),
    scroller,
    box.el,
  );
  root.setAttribute("aria-labelledby", "panel-title");

  function bottom() {
    scroller.scrollTop = scroller.scrollHeight;
  }

  function render() {
    const stick = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 48;
    list.render();
    const t = timeline(conversationId);
    status.textContent = t.get(parentId) ? "" : "Loading the thread…";
    if (stick) bottom();
  }

  // A reply can show before its parent is loaded: page back until it is.
  async function findParent() {
    for (let i = 0; i < MAX_PAGES_TO_FIND_PARENT; i++) {
      const t = timeline(conversationId);
      if (t.get(parentId) || !t.hasOlder) break;
      if (!(await actions.loadOlder(conversationId))) break;
    }
    if (!timeline(conversationId).get(parentId)) status.textContent = "The start of this thread is gone.";
  }

  // A reply found by search.
  function reveal() {
    const jump = state.jump;
    if (jump?.conversationId !== conversationId || jump.threadId !== parentId) return;
    const el = messageElement(list.el, jump.messageId);
    if (!el) return;
    state.jump = null;
    showFound(el);
  }

  off.push(on("jump", reveal));
  off.push(on("timeline", (cid) => cid === conversationId && render()));
  off.push(on("receipts", (cid) => cid === conversationId && render()));
  render();
  findParent();
  box.focus();
  return () => off.forEach((stop) => stop());
}
