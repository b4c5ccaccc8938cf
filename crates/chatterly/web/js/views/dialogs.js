// The "new conversation" dialog: a direct message, a group or a channel,
// with people found by search. And the recent messages that mention you.

import * as actions from "../actions.js";
import { h, replace } from "../dom.js";
import { conversationTitle, displayName, fullTime, when } from "../format.js";
import { state } from "../state.js";
import { peopleSearch } from "./people.js";

const KINDS = [
  ["direct", "Direct message", "You and one other person"],
  ["group", "Group", "Private, for the people you add"],
  ["channel", "Channel", "A named room for a topic"],
];

/** Opens the dialog; `opened(conversation)` after it was created. */
export function newConversationDialog(opened, kind = "direct") {
  const picked = new Map();
  const error = h("p.error", { role: "alert" });
  const name = h("input", { id: "new-name", maxlength: 100, autocomplete: "off" });
  const nameField = h("div.field", {}, h("label", { for: "new-name" }, "Name"), name);
  const chips = h("ul.chips", { "aria-label": "Chosen people" });
  const submit = h("button.primary", { type: "submit" }, "Start");
  const radios = KINDS.map(([value, label, hint]) =>
    h(
      "label.kind",
      {},
      h("input", { type: "radio", name: "kind", value, checked: value === kind, onchange: () => setKind(value) }),
      h("span", {}, h("strong", {}, label), h("span.hint", {}, hint)),
    ),
  );
  const search = peopleSearch({
    id: "new-people",
    label: "People",
    exclude: (u) => picked.has(u.id),
    pick: (user) => {
      if (kind === "direct") picked.clear();
      picked.set(user.id, user);
      renderChips();
    },
  });

  const dialog = h(
    "dialog.modal",
    { "aria-labelledby": "new-title", onclose: () => dialog.remove() },
    h(
      "form",
      { onsubmit },
      h("h2", { id: "new-title" }, "New conversation"),
      h("fieldset.kinds", {}, h("legend", {}, "Kind"), radios),
      nameField,
      search.el,
      chips,
      error,
      h(
        "div.dialog-actions",
        {},
        h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"),
        submit,
      ),
    ),
  );

  function setKind(value) {
    kind = value;
    nameField.hidden = kind === "direct";
    name.required = kind !== "direct";
    if (kind === "direct" && picked.size > 1) {
      const first = [...picked.values()][0];
      picked.clear();
      picked.set(first.id, first);
    }
    submit.textContent = kind === "direct" ? "Start" : "Create";
    renderChips();
  }

  function renderChips() {
    replace(
      chips,
      [...picked.values()].map((user) =>
        h(
          "li.chip",
          {},
          displayName(user),
          h(
            "button.chip-remove",
            {
              type: "button",
              "aria-label": `Remove ${displayName(user)}`,
              onclick: () => {
                picked.delete(user.id);
                renderChips();
                search.refresh();
              },
            },
            "×",
          ),
        ),
      ),
    );
  }

  async function onsubmit(event) {
    event.preventDefault();
    error.textContent = "";
    if (kind === "direct" && picked.size !== 1) {
      error.textContent = "Choose the person to message.";
      return search.input.focus();
    }
    if (kind !== "direct" && !name.value.trim()) {
      error.textContent = "Give it a name.";
      return name.focus();
    }
    submit.disabled = true;
    try {
      const conversation = await actions.createConversation({
        type: kind,
        name: name.value.trim(),
        memberIds: [...picked.keys()],
      });
      dialog.close();
      opened(conversation);
    } catch (failure) {
      error.textContent = failure.message;
      submit.disabled = false;
    }
  }

  setKind(kind);
  document.body.append(dialog);
  dialog.showModal();
  search.input.focus();
}

/** Recent messages that mention you, newest first; one opens its conversation. */
export function mentionsDialog(navigate) {
  const list = h("ul.mention-list");
  const status = h("p.hint", { role: "status" }, "Loading…");
  const more = h("button.small", { type: "button", hidden: true, onclick: () => load() }, "Show older");
  let cursor = null;

  const dialog = h(
    "dialog.modal",
    { "aria-labelledby": "mentions-title", onclose: () => dialog.remove() },
    h("h2", { id: "mentions-title" }, "Mentions"),
    list,
    status,
    h("div.dialog-actions", {}, more, h("button", { type: "button", onclick: () => dialog.close() }, "Close")),
  );

  function item(m) {
    const conversation = state.conversations.get(m.conversation_id);
    const where = conversation ? conversationTitle(conversation, state.me) : "a conversation";
    return h(
      "li",
      {},
      h(
        "a.mention-item",
        {
          href: `/c/${m.conversation_id}`,
          onclick: (event) => {
            event.preventDefault();
            dialog.close();
            navigate(`/c/${m.conversation_id}`);
          },
        },
        h("span.meta", {}, h("strong", {}, displayName(m.user)), ` in ${where} `, h("time", { datetime: m.created_at, title: fullTime(m.created_at) }, when(m.created_at))),
        h("span.text", {}, m.content),
      ),
    );
  }

  async function load() {
    more.disabled = true;
    try {
      const page = await actions.loadMentions(cursor);
      list.append(...page.messages.map(item));
      cursor = page.next_cursor;
      status.textContent = list.childElementCount ? "" : "No one has mentioned you yet.";
    } catch (error) {
      status.textContent = `Could not load mentions: ${error.message}`;
    }
    more.hidden = cursor === null;
    more.disabled = false;
  }

  document.body.append(dialog);
  dialog.showModal();
  load();
}
