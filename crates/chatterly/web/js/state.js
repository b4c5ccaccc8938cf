// The client's state, in one place, and who to tell when it changes. Views
// read it and listen; actions (actions.js) and the socket (cable.js) change it
// and call `emit`.

const listeners = new Map();

/** Calls `fn(detail)` after every `emit(topic)`; returns an unsubscribe. */
export function on(topic, fn) {
  if (!listeners.has(topic)) listeners.set(topic, new Set());
  listeners.get(topic).add(fn);
  return () => listeners.get(topic)?.delete(fn);
}

export function emit(topic, detail) {
  for (const fn of [...(listeners.get(topic) || [])]) {
    try {
      fn(detail);
    } catch (error) {
      console.error(`listener of ${topic} failed`, error);
    }
  }
}

export const state = {
  /** The signed-in user (UserWithEmail), or null. */
  me: null,
  /** From GET /api/v1/client-config. */
  config: { ice_servers: [], max_message_chars: 4000, call_ring_timeout: 30 },
  /** "offline" | "connecting" | "live" | "reconnecting" */
  connection: "offline",
  /** id → ConversationWithMembers, with the server's read state
   *  (`last_read_seq`, `unread_count`, `mention_count`), kept exact live. */
  conversations: new Map(),
  /** The open conversation's id, or null. */
  currentId: null,
  /** The side panel of the open conversation: null, "members" or {thread: id}. */
  panel: null,
  /** A message to show once loaded (search): {conversationId, messageId,
   *  threadId}; the view that shows it clears it. */
  jump: null,
  /** Ids of users online now (PresenceChannel). */
  online: new Set(),
  /** conversation id → Map(user id → {name, timer}). */
  typing: new Map(),
  /** conversation id → Map(user id → {last_read_seq, last_delivered_seq}):
   *  other members' positions, for the ticks in direct conversations. */
  receipts: new Map(),
  /** conversation id → the highest seq this tab said it received. */
  delivered: new Map(),
};

export function reset() {
  state.me = null;
  state.connection = "offline";
  state.conversations.clear();
  state.currentId = null;
  state.panel = null;
  state.jump = null;
  state.online.clear();
  for (const people of state.typing.values()) for (const t of people.values()) clearTimeout(t.timer);
  state.typing.clear();
  state.receipts.clear();
  state.delivered.clear();
  timelines.clear();
}

// ---- conversations ----

/** Conversations, latest activity first. */
export function sortedConversations() {
  return [...state.conversations.values()].sort(
    (a, b) => Date.parse(b.last_activity_at) - Date.parse(a.last_activity_at) || b.id - a.id,
  );
}

const READ_KEYS = ["last_read_seq", "unread_count", "mention_count"];

/** Adds or refreshes a conversation. A copy older than what the socket has
 *  told us since (a lower `last_seq`) keeps the counts we hold. */
export function putConversation(conversation) {
  const old = state.conversations.get(conversation.id);
  const merged = { last_read_seq: 0, unread_count: 0, mention_count: 0, ...old, ...conversation };
  if (old) {
    if ((conversation.last_seq || 0) < (old.last_seq || 0)) for (const key of READ_KEYS) merged[key] = old[key];
    merged.last_read_seq = Math.max(old.last_read_seq || 0, merged.last_read_seq || 0);
    merged.last_seq = Math.max(old.last_seq || 0, conversation.last_seq || 0);
    if (Date.parse(old.last_activity_at) > Date.parse(conversation.last_activity_at)) {
      merged.last_activity_at = old.last_activity_at;
    }
  }
  state.conversations.set(conversation.id, merged);
  return merged;
}

export function dropConversation(id) {
  state.conversations.delete(id);
  timelines.delete(id);
  state.typing.delete(id);
  state.receipts.delete(id);
}

/** Whether `message` mentions the viewer (by name, or @channel / @here). */
export function mentionsMe(message) {
  if (!state.me || message.user?.id === state.me.id) return false;
  return Boolean(message.broadcast_mention) || (message.mentions || []).includes(state.me.id);
}

/** Records what a member has read or received (positions only move on). */
export function putReceipt(conversationId, userId, { last_read_seq, last_delivered_seq }) {
  if (!state.receipts.has(conversationId)) state.receipts.set(conversationId, new Map());
  const people = state.receipts.get(conversationId);
  const old = people.get(userId) || { last_read_seq: null, last_delivered_seq: 0 };
  const read = last_read_seq === undefined || last_read_seq === null ? old.last_read_seq : Math.max(old.last_read_seq || 0, last_read_seq);
  // Reading implies delivery.
  const delivered = Math.max(old.last_delivered_seq || 0, last_delivered_seq || 0, read || 0);
  people.set(userId, { last_read_seq: read, last_delivered_seq: delivered });
}

/** "read", "delivered" or "sent" for one's own message in a direct conversation. */
export function tickOf(conversationId, message) {
  const conversation = state.conversations.get(conversationId);
  if (conversation?.conversation_type !== "direct" || !message.id || message.user?.id !== state.me?.id) return null;
  const others = [...(state.receipts.get(conversationId)?.entries() || [])].filter(([id]) => id !== state.me.id);
  if (!others.length) return "sent";
  if (others.every(([, r]) => (r.last_read_seq ?? -1) >= message.seq)) return "read";
  if (others.every(([, r]) => r.last_delivered_seq >= message.seq)) return "delivered";
  return "sent";
}

// ---- messages ----

/**
 * One conversation's messages as far as they are loaded: confirmed messages
 * by id (shown in `seq` order) and this tab's sends still in flight, by
 * `client_message_id`. A send is shown once: when the server's copy arrives
 * (the POST answer or the socket event, whichever is first) it replaces the
 * pending one, and later copies only refresh it.
 */
export class Timeline {
  constructor(conversationId) {
    this.conversationId = conversationId;
    this.byId = new Map();
    this.pending = new Map();
    this.loaded = false;
    this.nextCursor = null;
    this.hasOlder = true;
    this.loadingOlder = false;
    /** Set after a reconnect: edits and deletes may have been missed. */
    this.stale = false;
  }

  /** The highest `seq` held (catch-up resumes after it). */
  get lastSeq() {
    let max = 0;
    for (const m of this.byId.values()) max = Math.max(max, m.seq || 0);
    return max;
  }

  /** Adds or refreshes a message; returns true if it was not shown before. */
  put(message) {
    let wasPending = false;
    if (message.client_message_id && message.user?.id === state.me?.id) {
      wasPending = this.pending.delete(message.client_message_id);
    }
    const isNew = !this.byId.has(message.id);
    this.byId.set(message.id, message);
    return isNew && !wasPending;
  }

  remove(id) {
    return this.byId.delete(id);
  }

  get(id) {
    return this.byId.get(id);
  }

  /** Confirmed messages in `seq` order, then pending sends. */
  ordered() {
    const confirmed = [...this.byId.values()].sort((a, b) => (a.seq || 0) - (b.seq || 0) || a.id - b.id);
    return confirmed.concat([...this.pending.values()]);
  }

  replies(parentId) {
    return this.ordered().filter((m) => m.parent_message_id === parentId);
  }
}

const timelines = new Map();

export function timeline(conversationId) {
  if (!timelines.has(conversationId)) timelines.set(conversationId, new Timeline(conversationId));
  return timelines.get(conversationId);
}

export function hasTimeline(conversationId) {
  return timelines.has(conversationId) && timelines.get(conversationId).loaded;
}

export function allTimelines() {
  return [...timelines.values()];
}

/** Where a conversation's catch-up starts: after the last message held, or
 *  (not loaded) after the last one the server had when we last looked. */
export function sinceSeq(conversationId) {
  const t = timelines.get(conversationId);
  if (t && t.loaded) return t.lastSeq;
  return state.conversations.get(conversationId)?.last_seq || 0;
}
