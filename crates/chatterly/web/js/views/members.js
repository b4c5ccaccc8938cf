// The members panel: who is in the conversation (and online), adding and
// removing people (the conversation's creator is its admin), leaving.

import * as actions from "../actions.js";
import { h, icon, replace, toast } from "../dom.js";
import { displayName } from "../format.js";
import { on, state } from "../state.js";
import { avatar } from "./messages.js";
import { peopleSearch } from "./people.js";

export function renderMembers(root, conversationId) {
  const off = [];
  const list = h("ul.people", { "aria-label": "Members" });
  const heading = h("h2", { id: "panel-title" }, "Members");
  const conversation = () => state.conversations.get(conversationId);
  const isAdmin = () => conversation()?.created_by_id === state.me.id;
  const direct = conversation()?.conversation_type === "direct";

  const adder = peopleSearch({
    id: "add-member",
    label: "Add people",
    exclude: (u) => conversation()?.members.some((m) => m.id === u.id),
    pick: async (user) => {
      try {
        await actions.addMember(conversationId, user);
        toast(`${displayName(user)} was added`);
      } catch (error) {
        toast(`Could not add ${displayName(user)}: ${error.message}`, "error");
      }
    },
  });

  const leave = h(
    "button.danger",
    {
      type: "button",
      onclick: async () => {
        if (!confirm("Leave this conversation?")) return;
        try {
          await actions.leave(conversationId);
          toast("You left the conversation");
        } catch (error) {
          toast(`Could not leave: ${error.message}`, "error");
        }
      },
    },
    "Leave conversation",
  );

  replace(
    root,
    h(
      "header.panel-header",
      {},
      heading,
      h("button.icon-button", { type: "button", "aria-label": "Close members", onclick: actions.closePanel }, icon("close")),
    ),
    h("div.panel-body", {}, list, !direct && isAdmin() && adder.el, h("div.panel-footer", {}, leave)),
  );
  root.setAttribute("aria-labelledby", "panel-title");

  function render() {
    const c = conversation();
    if (!c) return;
    heading.textContent = `Members (${c.member_count})`;
    replace(
      list,
      c.members.map((member) => {
        const online = state.online.has(member.id);
        const me = member.id === state.me.id;
        return h(
          "li.person",
          {},
          h("span.with-dot", {}, avatar(member), h(`span.dot${online ? ".online" : ""}`, { "aria-hidden": "true" })),
          h(
            "span.name",
            {},
            displayName(member),
            me && " (you)",
            member.id === c.created_by_id && h("span.badge", {}, "admin"),
            h("span.sr-only", {}, online ? ", online" : ", offline"),
          ),
          !direct &&
            isAdmin() &&
            !me &&
            h(
              "button.small",
              {
                type: "button",
                "aria-label": `Remove ${displayName(member)}`,
                onclick: async () => {
                  try {
                    await actions.removeMember(conversationId, member);
                    toast(`${displayName(member)} was removed`);
                  } catch (error) {
                    toast(`Could not remove: ${error.message}`, "error");
                  }
                },
              },
              "Remove",
            ),
        );
      }),
    );
  }

  off.push(on("conversations", render));
  off.push(on("presence", render));
  render();
  root.querySelector("button")?.focus();
  return () => off.forEach((stop) => stop());
}
