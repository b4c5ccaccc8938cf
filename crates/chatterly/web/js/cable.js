// The WebSocket side (contract 6), through the official Action Cable client.
//
// One consumer per tab. UserChannel, PresenceChannel and CallChannel live as
// long as the session; every conversation the user is in has a
// ConversationChannel subscription. Catch-up: each conversation subscription
// carries `since_seq`, the last message this tab holds, so the server first
// replays whatever came after it. After a disconnect those subscriptions are
// dropped and made again on reconnect with the then-current `since_seq`
// (Action Cable alone would resubscribe with the stale one).

import { createConsumer } from "../vendor/actioncable.esm.js";

const PING_EVERY_MS = 25000;
/** The server allows 100 subscriptions per socket (--cable-max-subscriptions);
 *  three are the personal channels. */
export const MAX_ROOMS = 90;
const RETRY_DELAYS_MS = [250, 500, 1000, 2000, 3000, 5000];

let consumer = null;
let handlers = null;
let personal = {};
let pingTimer = null;
let retryTimer = null;
let connected = false;
let everConnected = false;
/** conversation id → its subscription, or null while waiting for a connection. */
const rooms = new Map();

/**
 * Opens the socket. `h` receives: connection(state), reconnected(),
 * room(conversationId, payload), roomRejected(conversationId), presence(payload),
 * user(payload), call(payload), refused().
 */
export function startCable(token, h) {
  stopCable();
  handlers = h;
  consumer = createConsumer(() => `/cable?token=${encodeURIComponent(token)}`);
  handlers.connection("connecting");
  personal.user = consumer.subscriptions.create(
    { channel: "UserChannel" },
    {
      connected: onConnected,
      disconnected: ({ willAttemptReconnect }) => onDisconnected(willAttemptReconnect),
      received: (data) => handlers.user(data),
    },
  );
  personal.presence = consumer.subscriptions.create(
    { channel: "PresenceChannel" },
    { received: (data) => handlers.presence(data) },
  );
  personal.calls = consumer.subscriptions.create(
    { channel: "CallChannel" },
    { received: (data) => handlers.call(data) },
  );
  pingTimer = setInterval(() => personal.presence?.perform("ping"), PING_EVERY_MS);
  addEventListener("online", retryNow);
}

export function stopCable() {
  clearInterval(pingTimer);
  clearTimeout(retryTimer);
  removeEventListener("online", retryNow);
  rooms.clear();
  personal = {};
  connected = false;
  everConnected = false;
  if (consumer) {
    const old = consumer;
    consumer = null;
    old.disconnect();
    for (const sub of [...old.subscriptions.subscriptions]) old.subscriptions.forget(sub);
  }
}

function onConnected() {
  connected = true;
  clearTimeout(retryTimer);
  handlers.connection("live");
  for (const [id, sub] of rooms) if (!sub) subscribeRoom(id);
  if (everConnected) handlers.reconnected();
  everConnected = true;
}

function onDisconnected(willAttemptReconnect) {
  if (!consumer) return;
  connected = false;
  handlers.connection("reconnecting");
  // The next connection resubscribes with fresh since_seq values.
  for (const [id, sub] of rooms) {
    if (sub) consumer.subscriptions.remove(sub);
    rooms.set(id, null);
  }
  if (!willAttemptReconnect) handlers.refused();
  scheduleRetry(0);
}

/** Action Cable's own monitor waits 6 to 12 s before reopening; a chat
 *  should come back as soon as the server does. */
function scheduleRetry(attempt) {
  clearTimeout(retryTimer);
  const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)];
  retryTimer = setTimeout(() => {
    if (!consumer || connected) return;
    consumer.ensureActiveConnection();
    scheduleRetry(attempt + 1);
  }, delay);
}

function retryNow() {
  if (consumer && !connected) scheduleRetry(0);
}

function subscribeRoom(id) {
  const params = { channel: "ConversationChannel", conversation_id: id, since_seq: handlers.sinceSeq(id) };
  const sub = consumer.subscriptions.create(params, {
    received: (data) => handlers.room(id, data),
    rejected: () => {
      rooms.delete(id);
      handlers.roomRejected(id);
    },
  });
  rooms.set(id, sub);
}

/** Follows a conversation's events (idempotent); false when the socket
 *  already follows as many as it may. */
export function watchConversation(id) {
  if (!consumer) return false;
  if (rooms.has(id)) return true;
  if (rooms.size >= MAX_ROOMS) return false;
  rooms.set(id, null);
  if (connected) subscribeRoom(id);
  return true;
}

export function watchedConversations() {
  return [...rooms.keys()];
}

export function unwatchConversation(id) {
  const sub = rooms.get(id);
  rooms.delete(id);
  if (sub && consumer) consumer.subscriptions.remove(sub);
}

export function isWatching(id) {
  return rooms.has(id);
}

/** A ConversationChannel action (`typing`, `stop_typing`, `mark_read`,
 *  `mark_delivered`); false when it could not be sent now. */
export function roomAction(id, action, data = {}) {
  return rooms.get(id)?.perform(action, { ...data }) ?? false;
}

/** A CallChannel action (accept_call, send_signal, toggle_mute, …). */
export function callAction(action, data) {
  return personal.calls?.perform(action, { ...data }) ?? false;
}
