// Searching people (GET /api/v1/users?search=), for new conversations and
// for adding members.

import * as api from "../api.js";
import { debounce, h, replace } from "../dom.js";
import { displayName } from "../format.js";
import { state } from "../state.js";
import { avatar } from "./messages.js";

/**
 * A search box and its results. `pick(user)` runs when a result is chosen;
 * `exclude(user)` hides some (oneself is always hidden); `action` labels
 * each result's button.
 */
export function peopleSearch({ label, pick, exclude = () => false, action = "Add", id }) {
  const input = h("input", { type: "search", id, autocomplete: "off", placeholder: "Name or username" });
  const results = h("ul.people", { "aria-label": "Search results" });
  const status = h("p.hint", { role: "status" });
  let seq = 0;

  const search = debounce(async () => {
    const query = input.value.trim();
    const mine = ++seq;
    if (!query) {
      results.replaceChildren();
      status.textContent = "";
      return;
    }
    let users;
    try {
      users = await api.searchUsers(query);
    } catch (error) {
      status.textContent = error.message;
      return;
    }
    if (mine !== seq) return;
    const shown = users.filter((u) => u.id !== state.me.id && !exclude(u));
    status.textContent = shown.length ? `${shown.length} found` : "Nobody found";
    replace(
      results,
      shown.map((user) =>
        h(
          "li.person",
          {},
          avatar(user),
          h("span.name", {}, displayName(user), h("span.hint", {}, ` @${user.username}`)),
          h(
            "button.small",
            {
              type: "button",
              "aria-label": `${action} ${displayName(user)}`,
              onclick: () => {
                pick(user);
                input.value = "";
                results.replaceChildren();
                status.textContent = `${displayName(user)} chosen`;
                input.focus();
              },
            },
            action,
          ),
        ),
      ),
    );
  }, 250);

  input.addEventListener("input", search);
  const el = h("div.people-search", {}, h("label.field", { for: id }, h("span", {}, label)), input, status, results);
  return { el, input, refresh: search };
}
