// The sidebar: who is signed in, the connection state, and the conversation
// list, latest activity first.

import { h, icon, replace } from "../dom.js";
import { conversationTitle, directPeer, displayName, when } from "../format.js";
import { on, sortedConversations, state } from "../state.js";
import { avatar } from "./messages.js";
import { messageSearch } from "./search.js";

const CONNECTION_TEXT = {
  offline: "Offline",
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
};

export function renderSidebar(root, { navigate, newConversation, showMentions, signOut, cycleTheme, themeLabel }) {
  const connection = h("p.connection", { role: "status", id: "connection-state" });
  const list = h("ul.conversations");
  const theme = h("button.icon-button", { type: "button", onclick: () => (cycleTheme(), renderTheme()) }, icon("theme"));
  const nav = h("nav", { "aria-label": "Conversations" }, list);
  // While a search is on, its results take the list's place.
  const search = messageSearch({ searching: (active) => (nav.hidden = active) });
  replace(
    root,
    h(
      "header.sidebar-header",
      {},
      h("div.me", {}, avatar(state.me), h("div", {}, h("p.name", {}, displayName(state.me)), connection)),
      h(
        "div.tools",
        {},
        h("button.icon-button.at", { type: "button", "aria-label": "Mentions", title: "Mentions", onclick: showMentions }, h("span", { "aria-hidden": "true" }, "@")),
        theme,
        h("button.icon-button", { type: "button", "aria-label": "Sign out", title: "Sign out", onclick: signOut }, icon("logout")),
      ),
    ),
    h(
      "button.new-conversation.primary",
      { type: "button", onclick: () => newConversation() },
      icon("plus"),
      "New conversation",
    ),
    search.form,
    search.el,
    nav,
  );

  function renderTheme() {
    const label = `Theme: ${themeLabel()}`;
    theme.setAttribute("aria-label", label);
    theme.title = label;
  }

  function renderConnection() {
    connection.textContent = CONNECTION_TEXT[state.connection] || state.connection;
    connection.dataset.state = state.connection;
  }

  function item(c) {
    const peer = directPeer(c, state.me);
    const title = conversationTitle(c, state.me);
    const current = c.id === state.currentId;
    const online = peer && state.online.has(peer.id);
    const badge =
      c.conversation_type === "direct"
        ? h("span.with-dot", {}, avatar(peer || state.me), h(`span.dot${online ? ".online" : ""}`, { "aria-hidden": "true" }))
        : h("span.kind-icon", { "aria-hidden": "true" }, icon(c.conversation_type === "channel" ? "hash" : "lock"));
    const unread = c.unread_count || 0;
    const mentions = c.mention_count || 0;
    const mentionText = `${mentions} ${mentions === 1 ? "mention" : "mentions"}`;
    const details = [
      c.conversation_type === "direct" ? (online ? "online" : "offline") : c.conversation_type,
      unread ? `${unread} unread` : null,
      mentions ? mentionText : null,
    ]
      .filter(Boolean)
      .join(", ");
    return h(
      "li",
      {},
      h(
        `a.conversation${unread || mentions ? ".unread" : ""}`,
        {
          href: `/c/${c.id}`,
          "aria-current": current ? "page" : false,
          dataset: { id: c.id },
          onclick: (event) => {
            if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
            event.preventDefault();
            navigate(`/c/${c.id}`);
          },
        },
        badge,
        h("span.title", {}, title, h("span.sr-only", {}, `, ${details}`)),
        h("time.when", { datetime: c.last_activity_at }, when(c.last_activity_at)),
        h(
          "span.counts",
          { "aria-hidden": "true" },
          mentions ? h("span.mention-count", { title: mentionText }, `@${mentions}`) : null,
          unread ? h("span.unread-count", { title: `${unread} unread` }, String(unread)) : null,
        ),
      ),
    );
  }

  /** What the list shows, to leave it alone when an event changes nothing. */
  let shown = null;
  const signature = (conversations) =>
    JSON.stringify(
      conversations.map((c) => [
        c.id,
        conversationTitle(c, state.me),
        c.id === state.currentId,
        c.members.map((m) => state.online.has(m.id)),
        c.unread_count,
        c.mention_count,
        c.last_activity_at,
        when(c.last_activity_at),
      ]),
    );

  function renderList() {
    const conversations = sortedConversations();
    const sig = signature(conversations);
    if (sig === shown) return;
    shown = sig;
    if (!conversations.length) {
      replace(list, h("li.empty", {}, "No conversations yet. Start one with someone."));
      return;
    }
    const focused = document.activeElement?.closest?.("a.conversation")?.dataset.id;
    replace(list, conversations.map(item));
    if (focused) list.querySelector(`a[data-id="${focused}"]`)?.focus();
  }

  const off = [
    on("conversations", renderList),
    on("presence", renderList),
    on("open", renderList),
    on("connection", renderConnection),
  ];
  renderTheme();
  renderConnection();
  renderList();
  return () => off.forEach((stop) => stop());
}
