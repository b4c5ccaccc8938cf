// What the user (and the socket) can do to the state: REST calls, then the
// state change, then `emit`. Views call these; they never call the API.

import * as api from "./api.js";
import * as cable from "./cable.js";
import { announce, toast } from "./dom.js";
import { displayName } from "./format.js";
import { dropConversation, emit, on, putConversation, putReceipt, sortedConversations, state, timeline } from "./state.js";

const TYPING_TIMEOUT_MS = 10000;
const TYPING_REFRESH_MS = 5000;
const SEND_RETRIES = 3;
const MARK_DELAY_MS = 300;

// ---- conversations ----

/** Loads the conversation list; follows every conversation's events. */
export async function loadConversations() {
  const list = await api.conversations();
  const ids = new Set(list.map((c) => c.id));
  for (const id of [...state.conversations.keys()]) {
    if (!ids.has(id)) {
      dropConversation(id);
      cable.unwatchConversation(id);
    }
  }
  for (const conversation of list) {
    const c = putConversation(conversation);
    // What reached this device while it was away has been delivered now.
    if (c.conversation_type === "direct" && c.unread_count > 0) markDelivered(c.id, c.last_seq);
  }
  // The most recently active ones are followed live (a socket may hold only
  // so many subscriptions); an older one is followed once opened.
  for (const conversation of sortedConversations()) cable.watchConversation(conversation.id);
  emit("conversations");
  if (state.currentId && !state.conversations.has(state.currentId)) emit("route");
}

function addConversation(conversation) {
  putConversation(conversation);
  watch(conversation.id);
  emit("conversations");
}

/** Follows a conversation, letting go of the least active one if need be. */
function watch(id) {
  if (cable.watchConversation(id)) return;
  const watched = new Set(cable.watchedConversations());
  const oldest = sortedConversations()
    .reverse()
    .find((c) => watched.has(c.id) && c.id !== id && c.id !== state.currentId);
  if (oldest) cable.unwatchConversation(oldest.id);
  cable.watchConversation(id);
}

/** Opens a conversation (loads its newest page, or refreshes a stale one). */
export async function openConversation(id) {
  state.currentId = id;
  state.panel = null;
  if (state.conversations.get(id)?.conversation_type === "direct") loadReceipts(id);
  if (!cable.isWatching(id)) {
    // Not followed until now: what we held may have gaps; start afresh.
    const t = timeline(id);
    t.byId.clear();
    t.loaded = false;
    watch(id);
  }
  emit("conversations");
  emit("open", id);
  const t = timeline(id);
  if (!t.loaded || t.stale) await refreshNewest(id);
  markSeen();
}

/**
 * Fetches the newest page and merges it: new messages are added, edited ones
 * and reactions refreshed, and messages in the page's range that the server
 * no longer returns (deleted while we were away) removed.
 */
export async function refreshNewest(id) {
  const t = timeline(id);
  const before = new Set(t.byId.keys());
  let page;
  try {
    page = await api.history(id);
  } catch (error) {
    if (error.status !== 401) toast(`Could not load messages: ${error.message}`, "error");
    return;
  }
  if (t.loaded) {
    // The page holds every live message from its oldest on (or all of them
    // when it is the only page). One we held before asking that is in that
    // range but not in the page was deleted. (Messages that arrived over the
    // socket meanwhile were not held before.)
    const seqs = page.messages.map((m) => m.seq);
    const low = page.next_cursor === null ? -Infinity : Math.min(...seqs);
    const present = new Set(page.messages.map((m) => m.id));
    for (const m of t.ordered()) {
      if (m.id && before.has(m.id) && m.seq >= low && !present.has(m.id)) t.remove(m.id);
    }
  }
  for (const m of page.messages) t.put(m);
  if (!t.loaded) {
    t.nextCursor = page.next_cursor;
    t.hasOlder = page.next_cursor !== null;
  }
  t.loaded = true;
  t.stale = false;
  emit("timeline", id);
}

/** The next older page (infinite scroll upward); `limit` as the server
 *  allows (default: its page size). */
export async function loadOlder(id, limit) {
  const t = timeline(id);
  if (t.loadingOlder || !t.hasOlder || !t.loaded) return false;
  t.loadingOlder = true;
  emit("timeline-loading", id);
  let page;
  try {
    page = await api.history(id, t.nextCursor, limit);
  } catch (error) {
    t.loadingOlder = false;
    emit("timeline-loading", id);
    toast(`Could not load older messages: ${error.message}`, "error");
    return false;
  }
  t.loadingOlder = false;
  for (const m of page.messages) t.put(m);
  t.nextCursor = page.next_cursor;
  t.hasOlder = page.next_cursor !== null && page.messages.length > 0;
  // Listeners may ask for the next page right away.
  emit("timeline", id);
  emit("timeline-loading", id);
  return true;
}

// ---- attachments ----

/** Uploads a file for the next message: `{done, abort}` (see api.js). */
export const uploadAttachment = (file, progress) => api.uploadAttachment(file, progress);

/** Starts a direct conversation, a group or a channel. */
export async function createConversation({ type, name, memberIds }) {
  const body = { conversation_type: type, member_ids: memberIds };
  if (type !== "direct") body.name = name;
  const conversation = await api.createConversation(body);
  addConversation(conversation);
  return conversation;
}

export async function refreshConversation(id) {
  try {
    putConversation(await api.conversation(id));
    emit("conversations");
  } catch {
    // The event that follows (or the next list load) settles it.
  }
}

export async function addMember(id, user) {
  await api.addMember(id, user.id);
  await refreshConversation(id);
}

export async function removeMember(id, user) {
  await api.removeMember(id, user.id);
  await refreshConversation(id);
}

/** Leaves a conversation (removes oneself) and closes it. */
export async function leave(id) {
  await api.removeMember(id, state.me.id);
  forgetConversation(id);
}

function forgetConversation(id) {
  cable.unwatchConversation(id);
  dropConversation(id);
  if (state.currentId === id) {
    state.currentId = null;
    emit("route", { navigate: "/" });
  }
  emit("conversations");
}

// ---- messages ----

function touch(conversationId, message) {
  const conversation = state.conversations.get(conversationId);
  if (!conversation) return;
  conversation.last_seq = Math.max(conversation.last_seq || 0, message.seq || 0);
  if (Date.parse(message.created_at) > Date.parse(conversation.last_activity_at)) {
    conversation.last_activity_at = message.created_at;
  }
}

/**
 * Sends with optimistic display: the message shows at once as pending, under
 * an idempotency key (`client_message_id`); failed attempts are retried with
 * the same key, so the server stores it once however often it is sent.
 */
export function sendMessage(conversationId, content, parentId = null, attachments = []) {
  const t = timeline(conversationId);
  const clientId = crypto.randomUUID();
  const pending = {
    id: null,
    pending: true,
    failed: false,
    client_message_id: clientId,
    content,
    attachments,
    created_at: new Date().toISOString(),
    edited_at: null,
    message_type: attachments.length ? "file" : "text",
    parent_message_id: parentId,
    reactions: [],
    call_session: null,
    user: state.me,
    conversation_id: conversationId,
  };
  t.pending.set(clientId, pending);
  emit("timeline", conversationId);
  deliver(conversationId, pending);
}

export function retrySend(conversationId, clientId) {
  const pending = timeline(conversationId).pending.get(clientId);
  if (!pending) return;
  pending.failed = false;
  pending.error = null;
  emit("timeline", conversationId);
  deliver(conversationId, pending);
}

export function discardSend(conversationId, clientId) {
  timeline(conversationId).pending.delete(clientId);
  emit("timeline", conversationId);
}

async function deliver(conversationId, pending) {
  const body = { content: pending.content, client_message_id: pending.client_message_id };
  // With attachments the server picks the type (image, or file).
  if (pending.attachments.length) body.attachment_ids = pending.attachments.map((a) => a.id);
  else body.message_type = "text";
  if (pending.parent_message_id) body.parent_message_id = pending.parent_message_id;
  for (let attempt = 0; ; attempt++) {
    try {
      const message = await api.sendMessage(conversationId, body);
      timeline(conversationId).put(message);
      touch(conversationId, message);
      readUpTo(conversationId, message.seq);
      emit("timeline", conversationId);
      emit("conversations");
      return;
    } catch (error) {
      const retriable = error.status === 0 || error.status === 429 || error.status >= 500;
      if (!retriable || attempt + 1 >= SEND_RETRIES || error.status === 401) {
        pending.failed = true;
        pending.error = error.message;
        emit("timeline", conversationId);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
      if (!timeline(conversationId).pending.has(pending.client_message_id)) return;
    }
  }
}

export async function editMessage(conversationId, message, content) {
  const edited = await api.editMessage(conversationId, message.id, content);
  timeline(conversationId).put(edited);
  emit("timeline", conversationId);
}

export async function deleteMessage(conversationId, message) {
  await api.deleteMessage(conversationId, message.id);
  timeline(conversationId).remove(message.id);
  closeThreadOf(message.id);
  emit("timeline", conversationId);
}

/** Adds `emoji` to the message, or takes one's own back. */
export async function toggleReaction(conversationId, message, emoji) {
  const mine = message.reactions.find((r) => r.emoji === emoji && r.user_id === state.me.id);
  const current = () => timeline(conversationId).get(message.id);
  if (mine) {
    await api.unreact(mine.id);
    const m = current();
    if (m) m.reactions = m.reactions.filter((r) => r.id !== mine.id);
  } else {
    const reaction = await api.react(message.id, emoji);
    const m = current();
    if (m && !m.reactions.some((r) => r.id === reaction.id)) m.reactions = [...m.reactions, reaction];
  }
  emit("timeline", conversationId);
}

// ---- search ----

const SEARCH_PAGE = 20;
/** Jumping back to a found message loads history in the largest pages the
 *  server gives (it clamps `limit`), up to this many of them. */
const JUMP_PAGE = 100;
const JUMP_MAX_PAGES = 50;
const JUMP_WAIT_MS = 15000;

/** A page of messages matching `q` (GET /api/v1/search), best first. */
export const searchMessages = (q, cursor) => api.search(q, { cursor, limit: SEARCH_PAGE });

/** Resolves once the timeline of `id` is loaded with no older page in
 *  flight, or the conversation was closed, or after JUMP_WAIT_MS. */
function settled(id) {
  return new Promise((resolve) => {
    const stops = [];
    const timer = setTimeout(done, JUMP_WAIT_MS);
    function done() {
      clearTimeout(timer);
      for (const stop of stops) stop();
      resolve();
    }
    function check() {
      const t = timeline(id);
      if (state.currentId !== id || (t.loaded && !t.loadingOlder)) done();
    }
    stops.push(on("timeline", check), on("timeline-loading", check), on("open", check));
    check();
  });
}

/**
 * Opens the conversation of a found message and shows it: history is loaded
 * back to it (a thread reply: back to its parent, and the thread opens),
 * then `jump` tells the views to scroll it into view and highlight it.
 */
export async function revealMessage(message) {
  const id = message.conversation_id;
  if (!state.conversations.has(id)) await loadConversations().catch(() => {});
  if (!state.conversations.has(id)) {
    toast("That conversation is not available");
    return;
  }
  const jump = { conversationId: id, messageId: message.id, threadId: message.parent_message_id || null };
  state.jump = jump;
  emit("route", { navigate: `/c/${id}` });
  const target = jump.threadId || jump.messageId;
  for (let pages = 0; ; pages++) {
    await settled(id);
    if (state.jump !== jump || state.currentId !== id) return;
    const t = timeline(id);
    if (t.get(target)) break;
    if (!t.loaded || !t.hasOlder || pages >= JUMP_MAX_PAGES) {
      state.jump = null;
      toast(t.loaded && t.hasOlder ? "That message is further back: scroll up to reach it" : "That message is no longer there");
      return;
    }
    await loadOlder(id, JUMP_PAGE);
  }
  if (jump.threadId) openThread(jump.threadId);
  emit("jump", jump);
}

// ---- side panels ----

export function openThread(messageId) {
  state.panel = { thread: messageId };
  emit("panel");
}

export function openMembers() {
  state.panel = "members";
  emit("panel");
}

export function closePanel() {
  state.panel = null;
  emit("panel");
}

function closeThreadOf(messageId) {
  if (state.panel?.thread === messageId) closePanel();
}

// ---- typing ----

const typingSent = new Map();

/** Call on every input: `typing` when text appears (refreshed while it
 *  stays), `stop_typing` when it is gone. */
export function composing(conversationId, hasText) {
  const last = typingSent.get(conversationId);
  if (hasText) {
    if (!last || Date.now() - last > TYPING_REFRESH_MS) {
      if (cable.roomAction(conversationId, "typing")) typingSent.set(conversationId, Date.now());
    }
  } else if (last) {
    stopComposing(conversationId);
  }
}

export function stopComposing(conversationId) {
  if (!typingSent.has(conversationId)) return;
  typingSent.delete(conversationId);
  cable.roomAction(conversationId, "stop_typing");
}

function setTyping(conversationId, userId, name) {
  if (!state.typing.has(conversationId)) state.typing.set(conversationId, new Map());
  const people = state.typing.get(conversationId);
  clearTimeout(people.get(userId)?.timer);
  const timer = setTimeout(() => clearTyping(conversationId, userId), TYPING_TIMEOUT_MS);
  people.set(userId, { name, timer });
  emit("typing", conversationId);
}

function clearTyping(conversationId, userId) {
  const people = state.typing.get(conversationId);
  if (!people?.has(userId)) return;
  clearTimeout(people.get(userId).timer);
  people.delete(userId);
  emit("typing", conversationId);
}

// ---- socket events ----

/** What the live region says of a new message. */
function spoken(message) {
  if (message.message_type === "call") return "call";
  const files = message.attachments?.length || 0;
  if (!files) return message.content;
  const what = files === 1 ? `sent ${message.attachments[0].name}` : `sent ${files} files`;
  return message.content ? `${message.content} (${what})` : what;
}

/** An event of a conversation's stream (contract 6.7). */
export function roomEvent(conversationId, event) {
  const t = timeline(conversationId);
  switch (event.type) {
    case "new_message": {
      const message = event.message;
      const conversation = state.conversations.get(conversationId);
      // A replay of what the counts already hold (catch-up) is no news.
      const counted = message.seq <= (conversation?.last_seq || 0);
      touch(conversationId, message);
      clearTyping(conversationId, message.user.id);
      const fresh = t.put(message);
      const mine = message.user.id === state.me.id;
      const open = state.currentId === conversationId;
      if (mine) {
        readUpTo(conversationId, message.seq);
      } else {
        if (conversation?.conversation_type === "direct") {
          markDelivered(conversationId, message.seq);
          replied(conversationId, message);
        }
        if (conversation && !counted && message.seq > conversation.last_read_seq && !(open && looking())) {
          conversation.unread_count += 1;
        }
        if (fresh && open) announce(`${displayName(message.user)}: ${spoken(message)}`);
      }
      emit("timeline", conversationId);
      emit("conversations");
      if (open) markSeen();
      break;
    }
    case "message_edited":
      if (t.get(event.message.id)) t.put(event.message);
      emit("timeline", conversationId);
      break;
    case "message_deleted":
      // An unread message may have gone: the server has the exact count.
      if (state.conversations.get(conversationId)?.unread_count > 0) refreshConversation(conversationId);
      t.remove(event.message_id);
      closeThreadOf(event.message_id);
      emit("timeline", conversationId);
      break;
    case "reaction_added": {
      const m = t.get(event.reaction.message_id);
      if (m && !m.reactions.some((r) => r.id === event.reaction.id)) m.reactions = [...m.reactions, event.reaction];
      emit("timeline", conversationId);
      break;
    }
    case "reaction_removed": {
      const m = t.get(event.message_id);
      if (m) m.reactions = m.reactions.filter((r) => r.id !== event.reaction_id);
      emit("timeline", conversationId);
      break;
    }
    case "typing_start":
      if (event.user_id !== state.me.id) setTyping(conversationId, event.user_id, event.display_name);
      break;
    case "typing_stop":
      clearTyping(conversationId, event.user_id);
      break;
    case "member_joined": {
      const conversation = state.conversations.get(conversationId);
      if (conversation && !conversation.members.some((m) => m.id === event.user.id)) {
        conversation.members = [...conversation.members, event.user];
        conversation.member_count = conversation.members.length;
        emit("conversations");
      }
      break;
    }
    case "member_left": {
      if (event.user_id === state.me.id) {
        toast("You are no longer a member of that conversation");
        forgetConversation(conversationId);
        break;
      }
      const conversation = state.conversations.get(conversationId);
      if (conversation) {
        conversation.members = conversation.members.filter((m) => m.id !== event.user_id);
        conversation.member_count = conversation.members.length;
        clearTyping(conversationId, event.user_id);
        emit("conversations");
      }
      break;
    }
    default:
      break;
  }
}

/** The subscription was refused: if we are no longer a member, forget it. */
export async function roomRejected(conversationId) {
  if (!state.conversations.has(conversationId)) return;
  try {
    await api.conversation(conversationId);
  } catch (error) {
    if (error.status === 403 || error.status === 404) forgetConversation(conversationId);
  }
}

export function presenceEvent(event) {
  if (event.type === "initial_presence") {
    state.online = new Set(event.online_user_ids);
  } else if (event.status === "online") {
    state.online.add(event.user_id);
  } else if (event.user_id !== undefined) {
    state.online.delete(event.user_id);
  }
  emit("presence");
}

export function userEvent(event) {
  const id = event.conversation_id;
  const conversation = state.conversations.get(id);
  switch (event.type) {
    case "new_conversation":
      addConversation(event.conversation);
      break;
    case "conversation_read":
      // Read here or on another device. An older mark of this tab's says
      // nothing new; counts taken before a message we have since seen are
      // out of date: ask again.
      if (!conversation || event.last_read_seq < conversation.last_read_seq) break;
      conversation.last_read_seq = event.last_read_seq;
      if (event.last_seq < (conversation.last_seq || 0)) {
        refreshConversation(id);
        break;
      }
      conversation.unread_count = event.unread_count;
      conversation.mention_count = event.mention_count;
      emit("conversations");
      break;
    case "mention":
      if (conversation && event.message.seq > conversation.last_read_seq && !(state.currentId === id && looking())) {
        conversation.mention_count += 1;
        emit("conversations");
      }
      break;
    case "mention_removed":
      if (conversation?.mention_count > 0) refreshConversation(id);
      break;
    case "read_receipt":
    case "message_delivered":
      putReceipt(id, event.user_id, event);
      emit("receipts", id);
      break;
    default:
      break;
  }
}

// ---- read state ----

const markTimers = new Map();

/** Runs `fn` once things settle (per key). */
function soon(key, fn) {
  clearTimeout(markTimers.get(key));
  markTimers.set(
    key,
    setTimeout(() => {
      markTimers.delete(key);
      fn();
    }, MARK_DELAY_MS),
  );
}

/** Over the socket if it is up, else over REST. */
function mark(id, kind, seq) {
  if (cable.roomAction(id, kind === "read" ? "mark_read" : "mark_delivered", { seq })) return;
  api.mark(id, kind, seq).catch(() => {});
}

/** Whether the person can see the open conversation now. */
export function looking() {
  return document.visibilityState === "visible" && document.hasFocus();
}

/** The read position moved to `seq` (here): counts go if nothing is newer. */
function readUpTo(id, seq) {
  const conversation = state.conversations.get(id);
  if (!conversation || !seq) return;
  conversation.last_read_seq = Math.max(conversation.last_read_seq, seq);
  if (conversation.last_read_seq >= (conversation.last_seq || 0)) {
    conversation.unread_count = 0;
    conversation.mention_count = 0;
  }
}

/** Marks the open conversation read up to its newest loaded message, soon,
 *  if the person is looking at it (not while the tab is hidden). */
export function markSeen() {
  const id = state.currentId;
  if (!id || !looking()) return;
  soon(`read:${id}`, () => {
    const conversation = state.conversations.get(id);
    const seq = timeline(id).lastSeq;
    if (state.currentId !== id || !looking() || !conversation) return;
    if (seq <= conversation.last_read_seq) return;
    mark(id, "read", seq);
    readUpTo(id, seq);
    emit("conversations");
  });
}

/** Tells the sender (direct conversations) that this device has `seq`. */
function markDelivered(id, seq) {
  if (!seq || seq <= (state.delivered.get(id) || 0)) return;
  state.delivered.set(id, seq);
  soon(`delivered:${id}`, () => mark(id, "delivered", state.delivered.get(id)));
}

/** A page of the messages that mention the viewer (GET /api/v1/mentions). */
export const loadMentions = (cursor) => api.mentions(cursor);

/** Sending moves the sender's position to their message (and tells no
 *  one): a reply has received, and read, what came before it. Read only if
 *  their receipts are visible to us (seen before), as the server would. */
function replied(id, message) {
  const known = state.receipts.get(id)?.get(message.user.id);
  if (!known) return;
  putReceipt(id, message.user.id, {
    last_read_seq: known.last_read_seq === null ? null : message.seq,
    last_delivered_seq: message.seq,
  });
  emit("receipts", id);
}

/** Everyone's positions in a direct conversation (for the ticks). */
async function loadReceipts(id) {
  try {
    for (const r of await api.receipts(id)) putReceipt(id, r.user_id, r);
    emit("receipts", id);
  } catch {
    // The ticks stay at "sent" until the next event.
  }
}

/** After a reconnect: catch-up replays new messages (since_seq); edits,
 *  deletes and reactions are settled by refreshing loaded conversations. */
export async function reconnected() {
  for (const t of allLoaded()) t.stale = true;
  try {
    await loadConversations();
  } catch {
    // Still offline; the next reconnect tries again.
  }
  if (state.currentId) await refreshNewest(state.currentId);
  markSeen();
}

function allLoaded() {
  return [...state.conversations.keys()].map((id) => timeline(id)).filter((t) => t.loaded);
}
