// Message search in the sidebar: a search box, and while a search is on,
// its results in place of the conversation list (best first, more on
// demand). Choosing a result opens its conversation at that message.

import * as actions from "../actions.js";
import { h, icon, replace } from "../dom.js";
import { conversationTitle, displayName, fullTime, when } from "../format.js";
import { state } from "../state.js";
import { avatar } from "./messages.js";

const ENTITIES = { "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#39;": "'" };

/**
 * The server's snippet (escaped text with `<mark>` around the matches) as
 * nodes, without handing any of it to the HTML parser: it is split on the
 * two tags, the five escapes are decoded, and every other piece is text. So
 * even a snippet with other markup could only ever show it, never run it.
 */
export function snippetNodes(snippet) {
  const nodes = [];
  let marked = false;
  for (const part of String(snippet).split(/(<mark>|<\/mark>)/)) {
    if (part === "<mark>") marked = true;
    else if (part === "</mark>") marked = false;
    else if (part) {
      const text = part.replace(/&(?:amp|lt|gt|quot|#39);/g, (entity) => ENTITIES[entity]);
      nodes.push(marked ? h("mark", {}, text) : document.createTextNode(text));
    }
  }
  return nodes;
}

/** Renders the box into `form` and the results into `results`; `searching(on)`
 *  is told when results take the list's place or give it back. */
export function messageSearch({ searching }) {
  const input = h("input", {
    type: "search",
    id: "message-search",
    autocomplete: "off",
    placeholder: "Search messages",
    "aria-label": "Search messages",
    maxlength: 256,
    onkeydown: (event) => {
      if (event.key === "Escape" && (input.value || active)) {
        event.preventDefault();
        event.stopPropagation();
        clear();
      }
    },
    // The field's own clear button (×) empties it: back to the list.
    oninput: () => !input.value && active && clear(false),
  });
  const form = h(
    "form.message-search",
    { role: "search", "aria-label": "Messages", onsubmit: (event) => (event.preventDefault(), run()) },
    input,
    h("button.icon-button", { type: "submit", "aria-label": "Search", title: "Search" }, icon("search")),
  );

  const heading = h("h2", { id: "search-title" });
  const status = h("p.hint.search-status", { role: "status" });
  const list = h("ol.search-results", { "aria-labelledby": "search-title" });
  const more = h("button.small.more", { type: "button", hidden: true, onclick: () => load() }, "More results");
  const el = h(
    "section.search",
    { hidden: true, "aria-labelledby": "search-title" },
    h(
      "header.search-header",
      {},
      heading,
      h("button.icon-button", { type: "button", "aria-label": "Close search", title: "Close search", onclick: () => clear() }, icon("close")),
    ),
    status,
    list,
    more,
  );

  let active = false;
  let query = "";
  let cursor = null;
  /** Bumped by every new search, so a late answer to an old one is dropped. */
  let generation = 0;

  function item({ message, snippet }) {
    const conversation = state.conversations.get(message.conversation_id);
    const where = conversation ? conversationTitle(conversation, state.me) : "A conversation";
    return h(
      "li",
      {},
      h(
        "a.search-hit",
        {
          href: `/c/${message.conversation_id}`,
          dataset: { id: message.id },
          onclick: (event) => {
            if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return;
            event.preventDefault();
            actions.revealMessage(message);
          },
        },
        h(
          "span.hit-meta",
          {},
          h("span.where", {}, where),
          h("time.when", { datetime: message.created_at, title: fullTime(message.created_at) }, when(message.created_at)),
        ),
        h(
          "span.hit-author",
          {},
          avatar(message.user, ".small"),
          displayName(message.user),
          message.parent_message_id ? h("span.hint", {}, " · in a thread") : null,
        ),
        h("span.snippet", {}, snippetNodes(snippet)),
      ),
    );
  }

  async function load() {
    const mine = generation;
    more.disabled = true;
    status.textContent = list.childElementCount ? "Loading more results…" : "Searching…";
    let page;
    try {
      page = await actions.searchMessages(query, cursor);
    } catch (error) {
      if (mine !== generation) return;
      status.textContent = error.status === 400 ? error.message : `Search failed: ${error.message}`;
      more.disabled = false;
      return;
    }
    if (mine !== generation) return;
    list.append(...page.results.map(item));
    cursor = page.next_cursor;
    const count = list.childElementCount;
    status.textContent = count
      ? `${count}${cursor ? "+" : ""} ${count === 1 ? "message" : "messages"} found`
      : `No messages match “${query}”.`;
    more.hidden = cursor === null;
    more.disabled = false;
  }

  function run() {
    const q = input.value.trim();
    if (!q) return clear();
    generation += 1;
    query = q;
    cursor = null;
    list.replaceChildren();
    heading.textContent = `Results for “${q}”`;
    more.hidden = true;
    if (!active) {
      active = true;
      el.hidden = false;
      searching(true);
    }
    load();
  }

  function clear(focus = true) {
    generation += 1;
    input.value = "";
    replace(list);
    status.textContent = "";
    if (active) {
      active = false;
      el.hidden = true;
      searching(false);
    }
    if (focus) input.focus();
  }

  return { form, el };
}
