// A list of messages (the conversation's and a thread's), updated in place:
// each message is one element, rebuilt only when what it shows changes, so
// scrolling, focus and half-typed edits survive live updates.

import * as actions from "../actions.js";
import { h, icon, toast } from "../dom.js";
import { dayLabel, displayName, duration, fullTime, hue, initials, sameDay, time } from "../format.js";
import { mentionsMe, state, tickOf, timeline } from "../state.js";
import { renderAttachments } from "./attachments.js";

export const EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢", "👀", "✅"];
const GROUP_WITHIN_MS = 5 * 60 * 1000;
/** `@name` as the server reads it: not after a letter, digit, `_` or `@`. */
const MENTION = /(?<![\p{L}\p{N}_@])@([A-Za-z0-9_]+)/gu;
const TICKS = {
  sent: ["✓", "Sent"],
  delivered: ["✓✓", "Delivered"],
  read: ["✓✓", "Read"],
};

/** Messages being edited: key → draft text. */
const editing = new Map();

function keyOf(m) {
  return m.id ? `m${m.id}` : `p${m.client_message_id}`;
}

export function avatar(user, extra = "") {
  return h(`span.avatar.${hue(user?.id)}${extra}`, { "aria-hidden": "true" }, initials(user));
}

function reactionGroups(message) {
  const groups = new Map();
  for (const r of message.reactions) {
    if (!groups.has(r.emoji)) groups.set(r.emoji, []);
    groups.get(r.emoji).push(r);
  }
  return groups;
}

function nameOf(conversationId, userId) {
  if (userId === state.me.id) return "You";
  const member = state.conversations.get(conversationId)?.members.find((m) => m.id === userId);
  return member ? displayName(member) : "Someone";
}

function callText(message) {
  const call = message.call_session || {};
  const mine = message.user.id === state.me.id;
  const who = mine ? "You" : displayName(message.user);
  const kind = call.call_type === "video" ? "video call" : "audio call";
  const aKind = call.call_type === "video" ? "a video call" : "an audio call";
  switch (call.status) {
    case "missed":
      return mine ? `No answer to your ${kind}` : `Missed ${kind} from ${who}`;
    case "declined":
      return `${who} started ${aKind} · declined`;
    default:
      return call.duration !== null && call.duration !== undefined
        ? `${who} started ${aKind} · ${duration(call.duration)}`
        : `${who} started ${aKind} · cancelled`;
  }
}

/** Everything that changes how a message looks, to know when to rebuild it. */
function signature(m, ctx) {
  return JSON.stringify([
    m.content,
    (m.attachments || []).map((a) => a.id),
    m.edited_at,
    m.pending,
    m.failed,
    m.error,
    m.reactions.map((r) => r.id),
    m.call_session?.status,
    m.mentions,
    m.broadcast_mention,
    ctx.grouped,
    ctx.newDay,
    ctx.unreadStart,
    ctx.tick,
    ctx.replies,
    ctx.lastReplyAt,
    editing.has(keyOf(m)),
    m.user.display_name,
  ]);
}

/** The day and "New messages" dividers above a message, if any. */
function separators(m, ctx) {
  if (!ctx.newDay && !ctx.unreadStart) return null;
  return h(
    "div.separators",
    {},
    ctx.newDay && h("div.day", { role: "separator" }, dayLabel(m.created_at)),
    ctx.unreadStart &&
      h("div.new-divider", { role: "separator", "aria-label": "New messages" }, h("span", { "aria-hidden": "true" }, "New messages")),
  );
}

/** The text, with the `@name`s the server resolved (members, @channel,
 *  @here) set apart; one's own name stands out more. */
function renderText(m, ctx) {
  const members = state.conversations.get(ctx.conversationId)?.members || [];
  const named = new Set(members.filter((u) => m.mentions?.includes(u.id)).map((u) => u.username.toLowerCase()));
  if (m.broadcast_mention) named.add(m.broadcast_mention);
  if (!named.size) return m.content;
  const parts = [];
  let last = 0;
  for (const match of m.content.matchAll(MENTION)) {
    const name = match[1].toLowerCase();
    if (!named.has(name)) continue;
    const toMe = name === state.me.username.toLowerCase() || name === m.broadcast_mention;
    parts.push(m.content.slice(last, match.index), h(`span.mention${toMe ? ".to-me" : ""}`, {}, match[0]));
    last = match.index + match[0].length;
  }
  parts.push(m.content.slice(last));
  return parts;
}

/** ✓ sent, ✓✓ delivered, coloured ✓✓ read (own messages, direct conversations). */
function renderTick(tick) {
  if (!tick) return null;
  const [symbol, label] = TICKS[tick];
  return h(`span.tick.${tick}`, { role: "img", "aria-label": label, title: label }, symbol);
}

function renderCall(m, ctx) {
  const missed = m.call_session?.status === "missed";
  return h(
    "li.msg.call-log",
    { dataset: { key: keyOf(m), id: m.id } },
    separators(m, ctx),
    h(
      "p",
      {},
      icon(m.call_session?.call_type === "video" ? "video" : "phone"),
      h(missed ? "span.missed" : "span", {}, callText(m)),
      " ",
      h("time", { datetime: m.created_at, title: fullTime(m.created_at) }, time(m.created_at)),
    ),
  );
}

function renderReactions(m, ctx) {
  const groups = reactionGroups(m);
  if (!groups.size) return null;
  return h(
    "div.reactions",
    { role: "group", "aria-label": "Reactions" },
    [...groups].map(([emoji, list]) => {
      const mine = list.some((r) => r.user_id === state.me.id);
      const names = list.map((r) => nameOf(ctx.conversationId, r.user_id)).join(", ");
      return h(
        "button.reaction",
        {
          type: "button",
          "aria-pressed": mine ? "true" : "false",
          "aria-label": `${emoji} ${list.length}: ${names}. ${mine ? "Remove your reaction" : "React with this too"}`,
          title: names,
          dataset: { fk: `r${emoji}` },
          onclick: () => react(ctx.conversationId, m, emoji),
        },
        h("span", { "aria-hidden": "true" }, emoji),
        h("span.count", { "aria-hidden": "true" }, String(list.length)),
      );
    }),
  );
}

function react(conversationId, m, emoji) {
  actions.toggleReaction(conversationId, m, emoji).catch((e) => toast(`Reaction failed: ${e.message}`, "error"));
}

function actionButton(name, label, fk, onclick) {
  return h("button.icon-button", { type: "button", "aria-label": label, title: label, dataset: { fk }, onclick }, icon(name));
}

function renderEditor(m, ctx) {
  const key = keyOf(m);
  const input = h("textarea", {
    "aria-label": "Edit message",
    rows: 2,
    maxlength: state.config.max_message_chars,
    value: editing.get(key),
    oninput: () => editing.set(key, input.value),
    onkeydown: (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        save();
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        stopEditing(key, ctx);
      }
    },
  });
  async function save() {
    const content = input.value.trim();
    if (!content) return;
    if (content === m.content) return stopEditing(key, ctx);
    try {
      editing.delete(key);
      await actions.editMessage(ctx.conversationId, m, content);
      ctx.focusAfter(key, "edit");
    } catch (error) {
      editing.set(key, content);
      toast(`Could not edit: ${error.message}`, "error");
    }
  }
  queueMicrotask(() => {
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  });
  return h(
    "form.editor",
    { onsubmit: (e) => (e.preventDefault(), save()) },
    input,
    h(
      "div.editor-actions",
      {},
      h("button.primary.small", { type: "submit" }, "Save"),
      h("button.small", { type: "button", onclick: () => stopEditing(key, ctx) }, "Cancel"),
      h("span.hint", {}, "Enter to save, Escape to cancel"),
    ),
  );
}

function stopEditing(key, ctx) {
  editing.delete(key);
  ctx.rerender();
  ctx.focusAfter(key, "edit");
}

export function startEditing(m, ctx) {
  editing.set(keyOf(m), m.content);
  ctx.rerender();
}

function renderMessage(m, ctx) {
  if (m.message_type === "call") return renderCall(m, ctx);
  const key = keyOf(m);
  const mine = m.user.id === state.me.id;
  const mentioned = mentionsMe(m);
  const classes = [
    "msg",
    ctx.grouped && "grouped",
    ctx.parent && "thread-parent",
    m.pending && "pending",
    m.failed && "failed",
    mine && "mine",
    mentioned && "mentioned",
  ]
    .filter(Boolean)
    .join(".");
  const author = displayName(m.user);
  const isEditing = editing.has(key);
  const actionsBar =
    m.pending || isEditing
      ? null
      : h(
          "div.actions",
          { role: "group", "aria-label": `Actions for the message from ${author}` },
          actionButton("smile", "Add reaction", "picker", (event) =>
            openPicker(event.currentTarget, (emoji) => react(ctx.conversationId, m, emoji)),
          ),
          !ctx.inThread && actionButton("thread", "Reply in thread", "reply", () => actions.openThread(m.id)),
          mine && actionButton("edit", "Edit message", "edit", () => startEditing(m, ctx)),
          mine &&
            actionButton("trash", "Delete message", "delete", async () => {
              if (!confirm("Delete this message?")) return;
              try {
                await actions.deleteMessage(ctx.conversationId, m);
              } catch (error) {
                toast(`Could not delete: ${error.message}`, "error");
              }
            }),
        );
  return h(
    `li.${classes}`,
    { dataset: { key, id: m.id || "" } },
    separators(m, ctx),
    avatar(m.user),
    h(
      "div.body",
      {},
      h(
        "div.meta",
        {},
        h("span.author", {}, author),
        " ",
        h("time", { datetime: m.created_at, title: fullTime(m.created_at) }, time(m.created_at)),
        m.edited_at && h("span.edited", { title: `Edited ${fullTime(m.edited_at)}` }, " (edited)"),
        mentioned && h("span.mentions-you", {}, "mentions you"),
      ),
      isEditing
        ? renderEditor(m, ctx)
        : ctx.tick
          ? h("div.with-tick", {}, h("div.text", {}, renderText(m, ctx)), renderTick(ctx.tick))
          : h("div.text", {}, renderText(m, ctx)),
      renderAttachments(m),
      renderReactions(m, ctx),
      ctx.replies > 0 &&
        h(
          "button.replies",
          { type: "button", dataset: { fk: "replies" }, onclick: () => actions.openThread(m.id) },
          `${ctx.replies} ${ctx.replies === 1 ? "reply" : "replies"}`,
          ctx.lastReplyAt &&
            h("span.hint", {}, " · last ", h("time", { datetime: ctx.lastReplyAt, title: fullTime(ctx.lastReplyAt) }, time(ctx.lastReplyAt))),
        ),
      !ctx.inThread &&
        m.parent_message_id &&
        !timeline(ctx.conversationId).get(m.parent_message_id) &&
        h(
          "button.replies",
          { type: "button", onclick: () => actions.openThread(m.parent_message_id) },
          "Replied in a thread",
        ),
      m.pending &&
        !m.failed &&
        h("p.status", {}, "Sending…"),
      m.failed &&
        h(
          "p.status.error",
          { role: "alert" },
          `Not sent: ${m.error} `,
          h("button.small", { type: "button", onclick: () => actions.retrySend(ctx.conversationId, m.client_message_id) }, "Retry"),
          " ",
          h("button.small", { type: "button", onclick: () => actions.discardSend(ctx.conversationId, m.client_message_id) }, "Discard"),
        ),
    ),
    actionsBar,
  );
}

// ---- a message found by search ----

const FOUND_MS = 2500;

/** Scrolls a message into the middle of its list, highlights it briefly and
 *  moves focus to it (so a screen reader reads it). */
export function showFound(el) {
  el.scrollIntoView({ block: "center" });
  el.classList.add("found");
  el.tabIndex = -1;
  el.focus({ preventScroll: true });
  setTimeout(() => el.classList.remove("found"), FOUND_MS);
}

/** The element of message `id` in `list`, if shown. */
export function messageElement(list, id) {
  return list.querySelector(`li[data-id="${Number(id)}"]`);
}

// ---- the reaction picker (one at a time, floating) ----

let picker = null;

function closePicker(restoreFocus = true) {
  if (!picker) return;
  const { el, anchor } = picker;
  picker = null;
  el.remove();
  document.removeEventListener("pointerdown", outside, true);
  if (restoreFocus && anchor.isConnected) anchor.focus();
}

function outside(event) {
  if (picker && !picker.el.contains(event.target) && event.target !== picker.anchor) closePicker(false);
}

export function openPicker(anchor, onPick) {
  closePicker(false);
  const buttons = EMOJI.map((emoji) =>
    h(
      "button.emoji",
      {
        type: "button",
        "aria-label": `React with ${emoji}`,
        onclick: () => {
          closePicker();
          onPick(emoji);
        },
      },
      emoji,
    ),
  );
  const el = h(
    "div.picker",
    {
      role: "group",
      "aria-label": "Pick a reaction",
      onkeydown: (event) => {
        const i = buttons.indexOf(document.activeElement);
        if (event.key === "Escape") {
          event.preventDefault();
          event.stopPropagation();
          closePicker();
        } else if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
          event.preventDefault();
          const next = (i + (event.key === "ArrowRight" ? 1 : -1) + buttons.length) % buttons.length;
          buttons[next].focus();
        }
      },
    },
    buttons,
  );
  document.body.append(el);
  const box = anchor.getBoundingClientRect();
  const width = el.offsetWidth;
  el.style.left = `${Math.max(8, Math.min(box.right - width, innerWidth - width - 8))}px`;
  el.style.top = `${box.top > 60 ? box.top - el.offsetHeight - 6 : box.bottom + 6}px`;
  picker = { el, anchor };
  document.addEventListener("pointerdown", outside, true);
  buttons[0].focus();
}

// ---- the list ----

/**
 * A live list of one conversation's messages. `filter(m, timeline)` picks
 * which; `inThread` renders a thread (no thread buttons, no reply counts).
 */
export function messageList({ conversationId, filter, inThread = false, label, readMark = () => null }) {
  const list = h("ol.messages", { "aria-label": label });
  const cache = new Map();
  const ctxBase = {
    conversationId,
    inThread,
    rerender: () => render(),
    focusAfter: (key, fk) =>
      queueMicrotask(() => cache.get(key)?.el.querySelector(`[data-fk="${fk}"]`)?.focus()),
  };

  function render() {
    const t = timeline(conversationId);
    const all = t.ordered();
    const replies = new Map();
    if (!inThread) {
      for (const m of all) {
        if (!m.parent_message_id) continue;
        const entry = replies.get(m.parent_message_id) || { count: 0, last: null };
        entry.count += 1;
        entry.last = m.created_at;
        replies.set(m.parent_message_id, entry);
      }
    }
    const items = all.filter((m) => filter(m, t));
    // "New messages" goes above the first message after the read position
    // the conversation was opened with.
    const mark = readMark();
    const firstUnread = mark === null ? null : items.find((m) => m.seq > mark && m.user.id !== state.me.id);
    const wanted = [];
    let prev = null;
    for (const m of items) {
      const key = keyOf(m);
      const unreadStart = m === firstUnread;
      const ctx = {
        ...ctxBase,
        parent: inThread && !m.parent_message_id,
        unreadStart,
        tick: tickOf(conversationId, m),
        grouped:
          !unreadStart &&
          prev !== null &&
          !(inThread && !prev.parent_message_id) &&
          prev.message_type !== "call" &&
          m.message_type !== "call" &&
          prev.user.id === m.user.id &&
          Date.parse(m.created_at) - Date.parse(prev.created_at) < GROUP_WITHIN_MS &&
          sameDay(prev.created_at, m.created_at),
        newDay: !inThread && (prev === null || !sameDay(prev.created_at, m.created_at)),
        replies: replies.get(m.id)?.count || 0,
        lastReplyAt: replies.get(m.id)?.last || null,
      };
      const sig = signature(m, ctx);
      const old = cache.get(key);
      if (!old || old.sig !== sig) {
        const el = renderMessage(m, ctx);
        if (old) {
          const focused = old.el.contains(document.activeElement) && document.activeElement.dataset.fk;
          old.el.replaceWith(el);
          if (focused) el.querySelector(`[data-fk="${CSS.escape(focused)}"]`)?.focus();
        }
        cache.set(key, { el, sig });
      }
      wanted.push(key);
      prev = m;
    }
    const keep = new Set(wanted);
    for (const [key, entry] of cache) {
      if (!keep.has(key)) {
        entry.el.remove();
        cache.delete(key);
      }
    }
    let cursor = list.firstElementChild;
    for (const key of wanted) {
      const el = cache.get(key).el;
      if (el === cursor) cursor = cursor.nextElementSibling;
      else list.insertBefore(el, cursor);
    }
  }

  /** The newest own message (ArrowUp in an empty composer edits it). */
  function lastOwn() {
    const t = timeline(conversationId);
    return t
      .ordered()
      .filter((m) => filter(m, t) && m.id && m.user.id === state.me.id && m.message_type !== "call")
      .pop();
  }

  return { el: list, render, editLast: () => lastOwn() && startEditing(lastOwn(), ctxBase) };
}
