// Shared helpers of the Action Cable tests: the official @rails/actioncable
// client running under Node (with `ws` as its WebSocket), a recorder of the
// raw frames every socket receives, and small REST helpers over fetch.
//
// The server under test is at CHATTERLY_URL (http://127.0.0.1:PORT); the Rust
// test crates/chatterly/tests/cable.rs starts it and runs these files.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import ActionCable from "@rails/actioncable";
import WebSocket from "ws";

// The client's connection monitor listens for `visibilitychange` on the
// window; Node has no window.
globalThis.addEventListener ??= () => {};
globalThis.removeEventListener ??= () => {};

export const BASE_URL = (() => {
  const url = process.env.CHATTERLY_URL;
  if (!url) {
    throw new Error(
      "CHATTERLY_URL is not set; run these tests through `cargo test -p chatterly --test cable`",
    );
  }
  return url.replace(/\/+$/, "");
})();
export const CABLE_URL = `${BASE_URL.replace(/^http/, "ws")}/cable`;

/** Default wait for something the server should do promptly. */
export const WAIT_MS = 5000;

// ---- raw frame recording --------------------------------------------------

/** Clients by their socket URL (each client's URL is unique). */
const clientsByUrl = new Map();

/**
 * `ws` with a recorder: every frame the socket receives is kept on the
 * client that opened it, before the Action Cable client handles it.
 */
class RecordingWebSocket extends WebSocket {
  constructor(url, protocols, options) {
    super(url, protocols, options);
    const client = clientsByUrl.get(String(url));
    if (client) {
      client.sockets.push(this);
      this.on("message", (data, isBinary) => client.record(isBinary ? data : data.toString()));
    }
  }
}

ActionCable.adapters.WebSocket = RecordingWebSocket;
ActionCable.logger.enabled = Boolean(process.env.CABLE_DEBUG);

// ---- waiting --------------------------------------------------------------

/** Items arriving over time; tests wait for ones that match. */
export class Inbox {
  constructor(name) {
    this.name = name;
    this.items = [];
    this.waiters = new Set();
  }

  push(item) {
    this.items.push(item);
    for (const waiter of [...this.waiters]) waiter();
  }

  /** How many items arrived so far (a mark for `find(..., { from })`). */
  mark() {
    return this.items.length;
  }

  filter(predicate, from = 0) {
    return this.items.slice(from).filter(predicate);
  }

  /**
   * The first item (at or after index `from`) matching `predicate`, already
   * here or arriving within `timeout` ms; fails the test otherwise.
   */
  find(predicate, { timeout = WAIT_MS, from = 0, what = "a matching item" } = {}) {
    return new Promise((resolve, reject) => {
      let scanned = from;
      const check = () => {
        for (; scanned < this.items.length; scanned++) {
          if (predicate(this.items[scanned])) {
            done();
            resolve(this.items[scanned]);
            return;
          }
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new assert.AssertionError({
            message:
              `${this.name}: no ${what} within ${timeout} ms; got ` +
              JSON.stringify(this.items.slice(from)).slice(0, 4000),
          }),
        );
      }, timeout);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Waits until `count` items match (counting from `from`). */
  async count(predicate, count, { timeout = WAIT_MS, from = 0, what = "matching items" } = {}) {
    let seen = 0;
    await this.find(
      (item) => predicate(item) && ++seen >= count,
      { timeout, from, what: `${count} ${what}` },
    );
    return this.filter(predicate, from);
  }

  /** Waits `ms` and asserts that no item (at or after `from`) matches. */
  async none(predicate, ms, { from = 0, what = "item" } = {}) {
    await sleep(ms);
    const found = this.filter(predicate, from);
    assert.equal(
      found.length,
      0,
      `${this.name}: unexpected ${what}: ${JSON.stringify(found).slice(0, 2000)}`,
    );
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- the Action Cable client ----------------------------------------------

let clientCounter = 0;

/** One Action Cable consumer (one browser tab), recording what it receives. */
export class Client {
  constructor(token, label = "client") {
    clientCounter += 1;
    this.label = `${label}#${clientCounter}`;
    // The extra parameter makes each client's URL unique, so the recorder can
    // tell sockets apart; the server ignores it.
    this.url = `${CABLE_URL}?token=${encodeURIComponent(token)}&test_client=${process.pid}_${clientCounter}`;
    this.raw = new Inbox(`${this.label} frames`);
    this.sockets = [];
    this.closed = false;
    clientsByUrl.set(this.url, this);
    this.consumer = ActionCable.createConsumer(this.url);
  }

  record(text) {
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    this.raw.push({ text, json, at: Date.now() });
  }

  /** Subscribes with these params (the identifier is JSON.stringify(params)). */
  subscribe(params, label) {
    return new Sub(this, params, label);
  }

  /** The frames that are not heartbeats. */
  frames() {
    return this.raw.items.filter((f) => f.json?.type !== "ping");
  }

  /** Waits for the first frame the server sent. */
  async firstFrame() {
    return this.raw.find(() => true, { what: "first frame" });
  }

  /** The socket the consumer uses now. */
  get socket() {
    return this.consumer.connection.webSocket;
  }

  /** Closes for good: no reconnect, sockets closed, timers stopped. */
  async close() {
    if (this.closed) return;
    this.closed = true;
    const subscriptions = this.consumer.subscriptions;
    for (const subscription of [...subscriptions.subscriptions]) subscriptions.forget(subscription);
    subscriptions.guarantor.stopGuaranteeing();
    this.consumer.disconnect();
    this.consumer.connection.monitor.stop();
    await Promise.all(
      this.sockets.map(
        (socket) =>
          new Promise((resolve) => {
            if (socket.readyState === WebSocket.CLOSED) return resolve();
            const timer = setTimeout(() => {
              socket.terminate();
              resolve();
            }, 2000);
            socket.once("close", () => {
              clearTimeout(timer);
              resolve();
            });
            if (socket.readyState === WebSocket.CONNECTING) socket.terminate();
            else socket.close();
          }),
      ),
    );
    clientsByUrl.delete(this.url);
  }
}

/** One subscription, recording its callbacks and received messages. */
export class Sub {
  constructor(client, params, label) {
    this.client = client;
    this.params = params;
    this.label = label ?? JSON.stringify(params);
    this.events = new Inbox(`${client.label} ${this.label} callbacks`);
    this.messages = new Inbox(`${client.label} ${this.label} messages`);
    const events = this.events;
    const messages = this.messages;
    this.subscription = client.consumer.subscriptions.create(params, {
      connected(data) {
        events.push({ kind: "connected", data, at: Date.now() });
      },
      disconnected(data) {
        events.push({ kind: "disconnected", data, at: Date.now() });
      },
      rejected() {
        events.push({ kind: "rejected", at: Date.now() });
      },
      received(message) {
        messages.push(message);
      },
    });
  }

  get identifier() {
    return this.subscription.identifier;
  }

  /** Waits for the confirmation; fails on a rejection. */
  async confirmed(timeout = WAIT_MS) {
    const event = await this.events.find((e) => e.kind === "connected" || e.kind === "rejected", {
      timeout,
      what: "confirmation or rejection",
    });
    assert.equal(event.kind, "connected", `${this.label} was rejected`);
    return this;
  }

  /** Waits for the rejection; fails on a confirmation. */
  async rejected(timeout = WAIT_MS) {
    const event = await this.events.find((e) => e.kind === "connected" || e.kind === "rejected", {
      timeout,
      what: "confirmation or rejection",
    });
    assert.equal(event.kind, "rejected", `${this.label} was confirmed, expected a rejection`);
  }

  perform(action, data = {}) {
    const sent = this.subscription.perform(action, data);
    assert.ok(sent, `${this.label}: perform(${action}) found no open socket`);
  }

  unsubscribe() {
    this.subscription.unsubscribe();
  }

  /** The first received message matching `predicate`. */
  next(predicate, options = {}) {
    return this.messages.find(predicate, options);
  }
}

/** A connected client closed when the test ends. */
export function connect(t, token, label) {
  const client = new Client(token, label);
  t.after(() => client.close());
  return client;
}

/** Connects and subscribes; resolves once confirmed. */
export async function connectAndSubscribe(t, token, params, label) {
  const client = connect(t, token, label);
  const sub = await client.subscribe(params).confirmed();
  return { client, sub };
}

export const conversationChannel = (id, extra = {}) => ({
  channel: "ConversationChannel",
  conversation_id: id,
  ...extra,
});

// ---- REST ------------------------------------------------------------------

/** One REST call; returns { status, headers, text, json }. */
export async function api(method, path, { token, body } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`${BASE_URL}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(20000),
  });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json, request: `${method} ${path}` };
}

/** A REST call that must answer `status`; returns the JSON body. */
export async function expectApi(status, method, path, options) {
  const response = await api(method, path, options);
  assert.equal(
    response.status,
    status,
    `${response.request} answered ${response.status}, expected ${status}: ${response.text}`,
  );
  return response.json;
}

/** A unique valid username starting with `prefix` (≤ 30 chars). */
export function uniqueName(prefix) {
  const suffix = randomBytes(6).toString("hex");
  return `${prefix.slice(0, 17)}_${suffix}`.toLowerCase();
}

/**
 * Registers a user. `displayName` undefined means "Display <username>";
 * null omits the key.
 */
export async function register(prefix, { displayName } = {}) {
  const username = uniqueName(prefix);
  const user = {
    email: `${username}@example.test`,
    password: `s3cret-pass-${username}`,
    username,
  };
  const display = displayName === undefined ? `Display ${username}` : displayName;
  if (display !== null) user.display_name = display;
  const response = await api("POST", "/auth/register", { body: { user } });
  assert.equal(response.status, 201, `register ${username}: ${response.status} ${response.text}`);
  const authorization = response.headers.get("authorization") ?? "";
  assert.match(authorization, /^Bearer \S+$/, "register returns the token in Authorization");
  return {
    id: response.json.user.id,
    username,
    email: user.email,
    password: user.password,
    displayName: display,
    token: authorization.slice("Bearer ".length),
  };
}

/** Logs in again: a second token (a second device). */
export async function login(user) {
  const response = await api("POST", "/auth/login", {
    body: { user: { email: user.email, password: user.password } },
  });
  assert.equal(response.status, 200, `login ${user.username}: ${response.text}`);
  return response.headers.get("authorization").slice("Bearer ".length);
}

/** A group created by `owner` (its admin) with `members`; returns its id. */
export async function createGroup(owner, name, members = []) {
  const body = await expectApi(201, "POST", "/api/v1/conversations", {
    token: owner.token,
    body: { name, conversation_type: "group", member_ids: members.map((m) => m.id) },
  });
  return body.data.id;
}

/** Sends a text message; returns the Message. */
export async function sendMessage(user, conversationId, content) {
  const body = await expectApi(201, "POST", `/api/v1/conversations/${conversationId}/messages`, {
    token: user.token,
    body: { content, message_type: "text" },
  });
  return body.data;
}

// ---- shapes ----------------------------------------------------------------

/** Asserts that `object` has at least these keys. */
export function assertKeys(object, keys, what) {
  assert.ok(object && typeof object === "object", `${what} is an object: ${JSON.stringify(object)}`);
  for (const key of keys) {
    assert.ok(Object.hasOwn(object, key), `${what} lacks "${key}": ${JSON.stringify(object)}`);
  }
}

export function assertUserPublic(user, expected) {
  assertKeys(user, ["id", "avatar_url", "display_name", "online", "username"], "UserPublic");
  assert.equal(typeof user.online, "boolean");
  assert.equal(user.email, undefined, "UserPublic does not carry the email");
  if (expected) {
    assert.equal(user.id, expected.id);
    assert.equal(user.username, expected.username);
  }
}

export function range(from, to) {
  const out = [];
  for (let i = from; i <= to; i++) out.push(i);
  return out;
}
