// The REST API (contract sections 2 to 4), nothing else. The token lives in
// sessionStorage: this tab keeps it across reloads, other origins cannot read
// it, and it is gone when the tab closes (see README, "Web client").

const TOKEN_KEY = "chatterly.token";
const TIMEOUT_MS = 15000;

let token = sessionStorage.getItem(TOKEN_KEY);
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function getToken() {
  return token;
}

function setToken(value) {
  token = value;
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Called when any authenticated call answers 401 (the session is over). */
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

/** The message a failure body carries (contract 1.8, 8.2). */
function errorText(status, body) {
  if (body && typeof body.error === "string") return body.error;
  if (body && body.errors) {
    const errors = Array.isArray(body.errors) ? body.errors : Object.values(body.errors).flat();
    return errors.join(", ");
  }
  return `The server answered ${status}`;
}

async function request(method, path, body, { auth = true } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(TIMEOUT_MS),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, "Cannot reach the server", null);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401 && auth && token) onUnauthorized();
    throw new ApiError(response.status, errorText(response.status, data), data);
  }
  return { data, response };
}

const get = (path) => request("GET", path).then((r) => r.data);
const post = (path, body = {}) => request("POST", path, body).then((r) => r.data);
const del = (path) => request("DELETE", path).then((r) => r.data);
const v1 = (path) => `/api/v1${path}`;

// ---- auth (contract 2) ----

async function authenticate(path, user) {
  const { data, response } = await request("POST", path, { user }, { auth: false });
  const header = response.headers.get("Authorization") || "";
  if (!header.startsWith("Bearer ")) throw new ApiError(500, "The server sent no token", data);
  setToken(header.slice("Bearer ".length));
  return data.user;
}

export const register = (user) => authenticate("/auth/register", user);
export const login = (email, password) => authenticate("/auth/login", { email, password });

/** Revokes the token on the server, then forgets it here. */
export async function logout() {
  try {
    if (token) await request("DELETE", "/auth/logout");
  } finally {
    setToken(null);
  }
}

/** Forgets the token without telling the server (it is already invalid). */
export function forget() {
  setToken(null);
}

// ---- users, conversations, members ----

export const me = () => get(v1("/users/me"));
export const searchUsers = (query) => get(v1(`/users?search=${encodeURIComponent(query)}`));
export const clientConfig = () => get(v1("/client-config"));

export const conversations = () => get(v1("/conversations")).then((b) => b.data);
export const conversation = (id) => get(v1(`/conversations/${id}`)).then((b) => b.data);
export const createConversation = (body) => post(v1("/conversations"), body).then((b) => b.data);
export const addMember = (id, userId) => post(v1(`/conversations/${id}/memberships`), { user_id: userId });
export const removeMember = (id, userId) => del(v1(`/conversations/${id}/memberships/${userId}`));

// ---- messages and reactions ----

/** A page of history older than `cursor` (oldest first); `limit` as the
 *  server allows (it clamps to `--max-page`). */
export function history(id, cursor, limit) {
  const params = new URLSearchParams();
  if (cursor) params.set("cursor", cursor);
  if (limit) params.set("limit", limit);
  const query = params.size ? `?${params}` : "";
  return get(v1(`/conversations/${id}/messages${query}`)).then((b) => b.data);
}

export const sendMessage = (id, body) => post(v1(`/conversations/${id}/messages`), body).then((b) => b.data);
export const editMessage = (id, messageId, content) =>
  request("PATCH", v1(`/conversations/${id}/messages/${messageId}`), { content }).then((r) => r.data);
export const deleteMessage = (id, messageId) => del(v1(`/conversations/${id}/messages/${messageId}`));
export const react = (messageId, emoji) => post(v1("/reactions"), { message_id: messageId, emoji });
export const unreact = (reactionId) => del(v1(`/reactions/${reactionId}`));

/** A page of full-text search results, best first: `{results: [{message,
 *  snippet}], next_cursor}` (the snippet is escaped HTML with `<mark>`). */
export function search(q, { cursor, limit } = {}) {
  const params = new URLSearchParams({ q });
  if (cursor) params.set("cursor", cursor);
  if (limit) params.set("limit", limit);
  return get(v1(`/search?${params}`)).then((b) => b.data);
}

// ---- attachments ----

/**
 * Uploads one file (multipart, part `file`) with XMLHttpRequest, the one
 * browser API that reports upload progress: `progress(fraction)` as bytes
 * go out. Returns `{done, abort}`; `done` resolves to the Attachment or
 * rejects with an ApiError (status 0 when aborted or unreachable).
 */
export function uploadAttachment(file, progress = () => {}) {
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.open("POST", v1("/attachments"));
    xhr.responseType = "text";
    xhr.setRequestHeader("Accept", "application/json");
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total > 0) progress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : null;
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300 && body?.data) return resolve(body.data);
      if (xhr.status === 401 && token) onUnauthorized();
      reject(new ApiError(xhr.status, errorText(xhr.status, body), body));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "Cannot reach the server", null)));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "Cancelled", null)));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
  return { done, abort: () => xhr.abort() };
}

/**
 * An attachment's `url` or `thumbnail_url` that the browser can load by
 * itself (`<img src>`, a download link), which sends no Authorization
 * header: the token goes in `access_token` (see the README on why the page
 * holds the token at all).
 */
export function attachmentHref(path) {
  if (!path) return null;
  return `${path}${path.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token || "")}`;
}

// ---- read state ----

/** `kind` is "read" or "delivered": the position moves up to `seq`. */
export const mark = (id, kind, seq) =>
  request("PUT", v1(`/conversations/${id}/${kind}`), { seq }).then((r) => r.data.data);
export const receipts = (id) => get(v1(`/conversations/${id}/receipts`)).then((b) => b.data);
export const mentions = (cursor) => get(v1(`/mentions${cursor ? `?cursor=${cursor}` : ""}`)).then((b) => b.data);

// ---- calls ----

export const startCall = (id, callType) =>
  post(v1(`/conversations/${id}/calls`), { call: { call_type: callType } }).then((b) => b.data);
export const acceptCall = (id, callId) =>
  request("PUT", v1(`/conversations/${id}/calls/${callId}/accept`), {}).then((r) => r.data);
export const joinCall = (id, callId) => post(v1(`/conversations/${id}/calls/${callId}/join`));
export const activeCall = (id) => get(v1(`/conversations/${id}/calls/active`));
