// Calls over CallChannel and REST (contract 4.7, 5.7, 6.6.4, 6.7, 6.8 and
// 10.6-10.8, 10.20), driven with the official client. The server for this
// file runs with `--call-ring-timeout 1`: a call nobody answers is missed
// about a second after it was created, so every flow that must not be missed
// answers at once, and waiting ~1.5 s after a call was created shows that the
// missed-call job changed nothing once the call was answered or over.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  api,
  assertKeys,
  assertUserPublic,
  connect,
  conversationChannel,
  createGroup,
  expectApi,
  register,
  sleep,
} from "./helpers.mjs";

const CALLS = { channel: "CallChannel" };
/** The server's `--call-ring-timeout`, in ms. */
const RING_TIMEOUT_MS = 1000;
/** How long "nothing more happens" is watched for. */
const SETTLE_MS = 400;

const CALL_SESSION_KEYS = ["id", "call_type", "conversation_id", "created_at", "initiator_id", "status"];
const SUMMARY_KEYS = ["id", "call_type", "status", "started_at", "ended_at", "duration", "initiator_id"];

/** One user's tab: its CallChannel and, if given, the conversation's stream. */
async function side(t, user, conversationId) {
  const client = connect(t, user.token, user.username.split("_")[0]);
  const calls = await client.subscribe(CALLS, "calls").confirmed();
  const room =
    conversationId === undefined
      ? undefined
      : await client.subscribe(conversationChannel(conversationId), "room").confirmed();
  return { user, client, calls, room };
}

async function direct(a, b) {
  const body = await expectApi(201, "POST", "/api/v1/conversations", {
    token: a.token,
    body: { conversation_type: "direct", member_ids: [b.id] },
  });
  return body.data.id;
}

const callsPath = (conversationId) => `/api/v1/conversations/${conversationId}/calls`;

/** `POST .../calls` (201); returns the CallSession. */
async function startCall(user, conversationId, callType = "video") {
  const body = await expectApi(201, "POST", callsPath(conversationId), {
    token: user.token,
    body: { call: { call_type: callType } },
  });
  const call = body.data;
  assertKeys(call, CALL_SESSION_KEYS, "CallSession");
  assert.equal(call.status, "ringing");
  assert.equal(call.initiator_id, user.id);
  assert.equal(call.call_type, callType);
  assert.equal(call.conversation_id, conversationId);
  return call;
}

const ofCall = (call, type) => (m) => m.type === type && m.call_session_id === call.id;
const isCallLog = (call) => (m) =>
  m.type === "new_message" && m.message.message_type === "call" && m.message.call_session?.id === call.id;
const count = (sub, predicate) => sub.messages.filter(predicate).length;

async function waitIncoming(s, call) {
  return s.calls.next(ofCall(call, "incoming_call"), { what: `incoming_call ${call.id}` });
}

/** The call logs of `call` in the conversation's history. */
async function callLogsInHistory(user, call) {
  const page = await expectApi(200, "GET", `/api/v1/conversations/${call.conversation_id}/messages?limit=100`, {
    token: user.token,
  });
  return page.data.messages.filter((m) => m.message_type === "call" && m.call_session?.id === call.id);
}

/** Asserts a call-log Message of `call` by `initiator` with `status`. */
function assertCallLog(message, call, initiator, status) {
  assert.equal(message.message_type, "call");
  assert.equal(message.content, "call");
  assertUserPublic(message.user, initiator);
  assert.equal(message.conversation_id, call.conversation_id);
  const summary = message.call_session;
  assert.deepEqual(Object.keys(summary), SUMMARY_KEYS, "CallSessionSummary keys, in order");
  assert.equal(summary.id, call.id);
  assert.equal(summary.call_type, call.call_type);
  assert.equal(summary.status, status);
  assert.equal(summary.initiator_id, initiator.id);
  if (summary.started_at !== null && summary.ended_at !== null) {
    const ms = Date.parse(summary.ended_at) - Date.parse(summary.started_at);
    assert.equal(summary.duration, Math.floor(ms / 1000), "duration = whole seconds");
  } else {
    assert.equal(summary.duration, null, "no duration unless started and ended");
  }
}

/** Waits until `ms` have passed since `call` was created (server clock ≈ ours). */
async function untilPast(call, ms) {
  const wait = Date.parse(call.created_at) + ms - Date.now();
  if (wait > 0) await sleep(wait);
}

test("the 1:1 call flow of contract 6.8, end to end", async (t) => {
  const [alice, bob] = await Promise.all([register("call_alice"), register("call_bob")]);
  const conversation = await direct(alice, bob);
  const a = await side(t, alice, conversation);
  const b = await side(t, bob, conversation);

  // 1-2. The caller POSTs; the callee's CallChannel rings.
  const call = await startCall(alice, conversation, "video");
  const incoming = await waitIncoming(b, call);
  assert.deepEqual(Object.keys(incoming), ["type", "call_session_id", "caller", "call_type", "conversation_id"]);
  assertUserPublic(incoming.caller, alice);
  assert.equal(incoming.caller.display_name, alice.displayName);
  assert.equal(incoming.call_type, "video");
  assert.equal(incoming.conversation_id, conversation);
  // A ringing call is not "active".
  await expectApi(404, "GET", `${callsPath(conversation)}/active`, { token: alice.token });

  // 3-4. The callee accepts; the caller learns who.
  b.calls.perform("accept_call", { call_session_id: call.id });
  const accepted = await a.calls.next(ofCall(call, "call_accepted"), { what: "call_accepted" });
  assertKeys(accepted, ["type", "call_session_id", "accepted_by"], "call_accepted");
  assertUserPublic(accepted.accepted_by, bob);
  const active = await expectApi(200, "GET", `${callsPath(conversation)}/active`, { token: bob.token });
  assert.equal(active.data, undefined, "GET active is a bare object");
  assert.equal(active.id, call.id);
  assert.equal(active.status, "active");
  assert.equal(typeof active.started_at, "string");
  assert.deepEqual(
    active.participants.map((p) => p.id).sort((x, y) => x - y),
    [alice.id, bob.id].sort((x, y) => x - y),
  );
  active.participants.forEach((p) => assertUserPublic(p));

  // The offer, relayed byte for byte (escapes, CRLFs and non-ASCII untouched).
  const offer = {
    type: "offer",
    sdp: 'v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=msid-semantic: WMS "x"\r\na=label:żółw 🐢\u2028\r\n',
  };
  a.calls.perform("send_signal", {
    call_session_id: call.id,
    target_user_id: accepted.accepted_by.id,
    signal: offer,
  });
  const gotOffer = await b.calls.next((m) => m.type === "signal" && m.signal?.type === "offer", { what: "offer" });
  assert.deepEqual(gotOffer, { type: "signal", call_session_id: call.id, from_user_id: alice.id, signal: offer });
  const offerFrame = b.client.raw.filter((f) => f.json?.message?.type === "signal");
  assert.equal(offerFrame.length, 1);
  assert.ok(
    offerFrame[0].text.includes(`"signal":${JSON.stringify(offer)}`),
    `the signal is relayed byte-identical: ${offerFrame[0].text}`,
  );

  // 5. The answer goes back to from_user_id; ICE trickles both ways. Bob
  // writes the call id as a string: it is echoed as sent.
  const answer = { type: "answer", sdp: "v=0\r\na=setup:active\r\n" };
  b.calls.perform("send_signal", { call_session_id: call.id, target_user_id: gotOffer.from_user_id, signal: answer });
  const gotAnswer = await a.calls.next((m) => m.type === "signal" && m.signal?.type === "answer", { what: "answer" });
  assert.deepEqual(gotAnswer, { type: "signal", call_session_id: call.id, from_user_id: bob.id, signal: answer });

  const candidate = (n) => ({
    type: "ice_candidate",
    candidate: {
      candidate: `candidate:${n} 1 udp 2122260223 192.168.1.${n} 5${n}000 typ host generation 0`,
      sdpMid: "0",
      sdpMLineIndex: 0,
      usernameFragment: `frag${n}`,
    },
  });
  a.calls.perform("send_signal", { call_session_id: call.id, target_user_id: bob.id, signal: candidate(1) });
  b.calls.perform("send_signal", { call_session_id: String(call.id), target_user_id: alice.id, signal: candidate(2) });
  const iceAtBob = await b.calls.next((m) => m.type === "signal" && m.signal?.type === "ice_candidate", { what: "ICE" });
  assert.deepEqual(iceAtBob, { type: "signal", call_session_id: call.id, from_user_id: alice.id, signal: candidate(1) });
  const iceAtAlice = await a.calls.next((m) => m.type === "signal" && m.signal?.type === "ice_candidate", { what: "ICE" });
  assert.deepEqual(iceAtAlice, {
    type: "signal",
    call_session_id: String(call.id),
    from_user_id: bob.id,
    signal: candidate(2),
  });

  // 7. Mute and camera reach the peer.
  b.calls.perform("toggle_mute", { call_session_id: call.id, muted: true });
  const muted = await a.calls.next(ofCall(call, "participant_muted"), { what: "participant_muted" });
  assert.deepEqual(muted, { type: "participant_muted", call_session_id: call.id, user_id: bob.id, muted: true });
  a.calls.perform("toggle_camera", { call_session_id: call.id, camera_off: true });
  const camera = await b.calls.next(ofCall(call, "participant_camera_toggled"), { what: "camera toggle" });
  assert.deepEqual(camera, {
    type: "participant_camera_toggled",
    call_session_id: call.id,
    user_id: alice.id,
    camera_off: true,
  });

  // Past the ring timeout the answered call is untouched (the job is a no-op),
  // and it has lasted at least a second.
  await untilPast(call, RING_TIMEOUT_MS + 300);
  await expectApi(200, "GET", `${callsPath(conversation)}/active`, { token: alice.token });

  // 6. Hang-up: the peer gets call_ended; the call log reaches the room.
  b.calls.perform("end_call", { call_session_id: call.id });
  const ended = await a.calls.next(ofCall(call, "call_ended"), { what: "call_ended" });
  assert.deepEqual(ended, { type: "call_ended", call_session_id: call.id, status: "ended" });
  const logAtAlice = await a.room.next(isCallLog(call), { what: "call log" });
  const logAtBob = await b.room.next(isCallLog(call), { what: "call log" });
  assert.deepEqual(logAtBob, logAtAlice);
  assertCallLog(logAtAlice.message, call, alice, "ended");
  assert.ok(logAtAlice.message.call_session.duration >= 1, `duration: ${JSON.stringify(logAtAlice.message)}`);
  const history = await callLogsInHistory(bob, call);
  assert.deepEqual(history, [logAtAlice.message], "the history holds the same, single call log");

  // Over is over: REST refuses, signals go nowhere.
  await expectApi(404, "GET", `${callsPath(conversation)}/active`, { token: alice.token });
  const again = await api("DELETE", `${callsPath(conversation)}/${call.id}`, { token: alice.token });
  assert.equal(again.status, 422, again.text);
  a.calls.perform("send_signal", { call_session_id: call.id, target_user_id: bob.id, signal: offer });
  a.calls.perform("toggle_mute", { call_session_id: call.id, muted: false });
  await sleep(SETTLE_MS);

  // Exactly these events, once each.
  assert.deepEqual(
    a.calls.messages.items.map((m) => m.type),
    ["call_accepted", "signal", "signal", "participant_muted", "call_ended"],
  );
  assert.deepEqual(
    b.calls.messages.items.map((m) => m.type),
    ["incoming_call", "signal", "signal", "participant_camera_toggled"],
  );
  assert.equal(count(a.room, isCallLog(call)), 1);
  assert.equal(count(b.room, isCallLog(call)), 1);
  assert.deepEqual(await callLogsInHistory(alice, call), history);
});

test("a declined call: the caller is told, one log, and nothing changes it after", async (t) => {
  const [alice, bob] = await Promise.all([register("dec_alice"), register("dec_bob")]);
  const conversation = await direct(alice, bob);
  const a = await side(t, alice, conversation);
  const b = await side(t, bob, conversation);

  const call = await startCall(alice, conversation, "audio");
  await waitIncoming(b, call);
  b.calls.perform("decline_call", { call_session_id: call.id });

  const declined = await a.calls.next(ofCall(call, "call_declined"), { what: "call_declined" });
  assert.deepEqual(Object.keys(declined), ["type", "call_session_id", "declined_by"]);
  assertUserPublic(declined.declined_by, bob);
  // Also on the conversation stream.
  const inRoom = await b.room.next(ofCall(call, "call_declined"), { what: "call_declined on the room" });
  assertUserPublic(inRoom.declined_by, bob);
  // The decliner's other ringing devices are dismissed.
  const dismissed = await b.calls.next(ofCall(call, "call_ended"), { what: "call_ended (declined)" });
  assert.equal(dismissed.status, "declined");
  const log = await a.room.next(isCallLog(call), { what: "call log" });
  assertCallLog(log.message, call, alice, "declined");
  assert.equal(log.message.call_session.started_at, null);

  // A late accept does nothing, on the socket or over REST; nor does a hang-up.
  b.calls.perform("accept_call", { call_session_id: call.id });
  a.calls.perform("end_call", { call_session_id: call.id });
  const rest = await api("PUT", `${callsPath(conversation)}/${call.id}/accept`, { token: bob.token });
  assert.equal(rest.status, 422, rest.text);
  assert.deepEqual(rest.json, { error: "Call is no longer ringing" });
  await expectApi(404, "GET", `${callsPath(conversation)}/active`, { token: bob.token });

  // Past the ring timeout: not missed either.
  await untilPast(call, RING_TIMEOUT_MS + 500);
  await sleep(SETTLE_MS);
  assert.deepEqual(a.calls.messages.items.map((m) => m.type), ["call_declined"]);
  assert.deepEqual(b.calls.messages.items.map((m) => m.type), ["incoming_call", "call_ended"]);
  for (const s of [a, b]) {
    assert.equal(count(s.room, isCallLog(call)), 1, `${s.user.username}: one call log`);
    assert.equal(count(s.room, ofCall(call, "call_declined")), 1);
  }
  const history = await callLogsInHistory(alice, call);
  assert.equal(history.length, 1);
  assertCallLog(history[0], call, alice, "declined");
});

test("the caller cancels while it rings: the callee's ringing stops", async (t) => {
  const [alice, bob] = await Promise.all([register("cnl_alice"), register("cnl_bob")]);
  const conversation = await direct(alice, bob);
  const a = await side(t, alice, conversation);
  const b = await side(t, bob, conversation);

  const call = await startCall(alice, conversation);
  await waitIncoming(b, call);
  a.calls.perform("end_call", { call_session_id: call.id });
  const ended = await b.calls.next(ofCall(call, "call_ended"), { what: "call_ended" });
  assert.deepEqual(ended, { type: "call_ended", call_session_id: call.id, status: "ended" });
  const log = await b.room.next(isCallLog(call), { what: "call log" });
  assertCallLog(log.message, call, alice, "ended");
  assert.equal(log.message.call_session.started_at, null, "never started");
  assert.equal(log.message.call_session.ended_at, null, "ended_at only if started");

  // Accepting a cancelled call does nothing.
  b.calls.perform("accept_call", { call_session_id: call.id });
  const rest = await api("PUT", `${callsPath(conversation)}/${call.id}/accept`, { token: bob.token });
  assert.equal(rest.status, 422, rest.text);

  await untilPast(call, RING_TIMEOUT_MS + 500);
  await sleep(SETTLE_MS);
  assert.deepEqual(a.calls.messages.items.map((m) => m.type), [], "the canceller is told nothing");
  assert.deepEqual(b.calls.messages.items.map((m) => m.type), ["incoming_call", "call_ended"]);
  assert.equal(count(a.room, isCallLog(call)), 1);
  const history = await callLogsInHistory(bob, call);
  assert.equal(history.length, 1);
  assertCallLog(history[0], call, alice, "ended");
});

test("an unanswered call is missed after the ring timeout, once, for everyone", async (t) => {
  const [alice, bob] = await Promise.all([register("mis_alice"), register("mis_bob")]);
  const conversation = await direct(alice, bob);
  const a = await side(t, alice, conversation);
  const b = await side(t, bob, conversation);

  const call = await startCall(alice, conversation, "audio");
  await waitIncoming(b, call);
  // Nobody answers. Caller and callee are both told.
  const atAlice = await a.calls.next(ofCall(call, "call_ended"), { what: "missed at the caller" });
  const atBob = await b.calls.next(ofCall(call, "call_ended"), { what: "missed at the callee" });
  for (const event of [atAlice, atBob]) {
    assert.deepEqual(event, { type: "call_ended", call_session_id: call.id, status: "missed" });
  }
  assert.ok(
    Date.now() - Date.parse(call.created_at) >= RING_TIMEOUT_MS - 100,
    "not missed before the ring timeout",
  );
  const log = await a.room.next(isCallLog(call), { what: "missed call log" });
  assertCallLog(log.message, call, alice, "missed");

  // A late accept changes nothing; REST answers 422; the missed call stays missed.
  b.calls.perform("accept_call", { call_session_id: call.id });
  a.calls.perform("end_call", { call_session_id: call.id });
  const accept = await api("PUT", `${callsPath(conversation)}/${call.id}/accept`, { token: bob.token });
  assert.equal(accept.status, 422, accept.text);
  assert.deepEqual(accept.json, { error: "Call is no longer ringing" });
  const decline = await api("PUT", `${callsPath(conversation)}/${call.id}/decline`, { token: bob.token });
  assert.equal(decline.status, 422, decline.text);
  const end = await api("DELETE", `${callsPath(conversation)}/${call.id}`, { token: alice.token });
  assert.equal(end.status, 422, end.text);
  await expectApi(404, "GET", `${callsPath(conversation)}/active`, { token: alice.token });

  await sleep(SETTLE_MS + 300);
  assert.deepEqual(a.calls.messages.items.map((m) => m.type), ["call_ended"]);
  assert.deepEqual(b.calls.messages.items.map((m) => m.type), ["incoming_call", "call_ended"]);
  for (const s of [a, b]) assert.equal(count(s.room, isCallLog(call)), 1, "one call log on the stream");
  const history = await callLogsInHistory(bob, call);
  assert.equal(history.length, 1, "one call log in the history");
  assertCallLog(history[0], call, alice, "missed");

  // The conversation is free for a new call.
  const next = await startCall(bob, conversation, "video");
  assert.notEqual(next.id, call.id);
  await waitIncoming(a, next);
  b.calls.perform("end_call", { call_session_id: next.id });
  await a.calls.next(ofCall(next, "call_ended"), { what: "call_ended of the second call" });
});

test("a group call: late joiners over REST and join_call, and who may signal", async (t) => {
  const [alice, bob, carol, dave] = await Promise.all([
    register("grp_alice"),
    register("grp_bob"),
    register("grp_carol"),
    register("grp_dave"),
  ]);
  const conversation = await createGroup(alice, "Call crew", [bob, carol, dave]);
  const a = await side(t, alice, conversation);
  const b = await side(t, bob);
  const c = await side(t, carol);
  const d = await side(t, dave);

  const call = await startCall(alice, conversation);
  for (const s of [b, c, d]) {
    const incoming = await waitIncoming(s, call);
    assertUserPublic(incoming.caller, alice);
  }
  // Joining needs an active call.
  const early = await api("POST", `${callsPath(conversation)}/${call.id}/join`, { token: carol.token });
  assert.equal(early.status, 422, early.text);
  assert.deepEqual(early.json, { error: "Call is not active" });

  b.calls.perform("accept_call", { call_session_id: call.id });
  const accepted = await a.calls.next(ofCall(call, "call_accepted"), { what: "call_accepted" });
  assertUserPublic(accepted.accepted_by, bob);

  // Carol joins over REST: a bare CallSessionWithParticipants.
  const joined = await expectApi(200, "POST", `${callsPath(conversation)}/${call.id}/join`, { token: carol.token });
  assert.equal(joined.data, undefined, "bare object");
  assertKeys(joined, [...CALL_SESSION_KEYS, "participants", "started_at"], "CallSessionWithParticipants");
  assert.equal(joined.id, call.id);
  assert.equal(joined.status, "active");
  const ids = (users) => users.map((u) => u.id).sort((x, y) => x - y);
  assert.deepEqual(ids(joined.participants), ids([alice, bob, carol]));
  for (const s of [a, b]) {
    const event = await s.calls.next(ofCall(call, "participant_joined"), { what: "carol joined" });
    assertKeys(event, ["type", "call_session_id", "user"], "participant_joined");
    assertUserPublic(event.user, carol);
  }

  // Carol can signal alice now.
  const offer = { type: "offer", sdp: "v=0\r\ncarol\r\n" };
  c.calls.perform("send_signal", { call_session_id: call.id, target_user_id: alice.id, signal: offer });
  const fromCarol = await a.calls.next((m) => m.type === "signal" && m.from_user_id === carol.id, {
    what: "carol's offer",
  });
  assert.deepEqual(fromCarol.signal, offer);

  // Dave rang but never joined: he may not signal, nor be signalled, nor toggle.
  const markA = a.calls.messages.mark();
  const markB = b.calls.messages.mark();
  d.calls.perform("send_signal", { call_session_id: call.id, target_user_id: alice.id, signal: offer });
  d.calls.perform("toggle_mute", { call_session_id: call.id, muted: true });
  a.calls.perform("send_signal", { call_session_id: call.id, target_user_id: dave.id, signal: offer });
  await a.calls.messages.none(() => true, SETTLE_MS, { from: markA, what: "event from a non-participant" });
  await b.calls.messages.none(() => true, 0, { from: markB, what: "event from a non-participant" });
  assert.deepEqual(d.calls.messages.items.map((m) => m.type), ["incoming_call"], "dave got no signal");

  // Dave joins over the socket; everyone already in is told, once.
  d.calls.perform("join_call", { call_session_id: call.id });
  for (const s of [a, b, c]) {
    const event = await s.calls.next((m) => m.type === "participant_joined" && m.user.id === dave.id, {
      what: "dave joined",
    });
    assert.equal(event.call_session_id, call.id);
    assertUserPublic(event.user, dave);
  }
  d.calls.perform("send_signal", { call_session_id: call.id, target_user_id: bob.id, signal: offer });
  const fromDave = await b.calls.next((m) => m.type === "signal" && m.from_user_id === dave.id, {
    what: "dave's offer",
  });
  assert.deepEqual(fromDave.signal, offer);
  const withDave = await expectApi(200, "GET", `${callsPath(conversation)}/active`, { token: dave.token });
  assert.deepEqual(ids(withDave.participants), ids([alice, bob, carol, dave]));

  // Joining again is a no-op: no second announcement.
  await expectApi(200, "POST", `${callsPath(conversation)}/${call.id}/join`, { token: carol.token });

  // A toggle reaches every other participant.
  c.calls.perform("toggle_mute", { call_session_id: call.id, muted: true });
  for (const s of [a, b, d]) {
    const event = await s.calls.next(ofCall(call, "participant_muted"), { what: "carol muted" });
    assert.deepEqual(event, { type: "participant_muted", call_session_id: call.id, user_id: carol.id, muted: true });
  }

  // The caller hangs up: everyone else is told.
  a.calls.perform("end_call", { call_session_id: call.id });
  for (const s of [b, c, d]) {
    const event = await s.calls.next(ofCall(call, "call_ended"), { what: "call_ended" });
    assert.equal(event.status, "ended");
  }
  const log = await a.room.next(isCallLog(call), { what: "call log" });
  assertCallLog(log.message, call, alice, "ended");
  const late = await api("POST", `${callsPath(conversation)}/${call.id}/join`, { token: dave.token });
  assert.equal(late.status, 422, late.text);

  await untilPast(call, RING_TIMEOUT_MS + 300);
  await sleep(SETTLE_MS);
  const joinedCount = (s, user) => count(s, (m) => m.type === "participant_joined" && m.user.id === user.id);
  for (const s of [a, b]) assert.equal(joinedCount(s.calls, carol), 1, "carol announced once");
  for (const s of [a, b, c]) assert.equal(joinedCount(s.calls, dave), 1, "dave announced once");
  assert.equal(joinedCount(c.calls, carol) + joinedCount(d.calls, dave), 0, "a joiner is not told of itself");
  assert.equal(count(a.calls, ofCall(call, "call_ended")), 0, "the one who hung up is not told");
  for (const s of [b, c, d]) assert.equal(count(s.calls, ofCall(call, "call_ended")), 1);
  assert.equal(count(a.room, isCallLog(call)), 1);
  assert.equal((await callLogsInHistory(dave, call)).length, 1);
});

test("a user outside the conversation can do nothing to its call", async (t) => {
  const [alice, bob, eve] = await Promise.all([register("nm_alice"), register("nm_bob"), register("nm_eve")]);
  const conversation = await direct(alice, bob);
  const a = await side(t, alice, conversation);
  const b = await side(t, bob);
  const e = await side(t, eve);
  const base = callsPath(conversation);

  // Eve may not even start one.
  const start = await api("POST", base, { token: eve.token, body: { call: { call_type: "audio" } } });
  assert.equal(start.status, 404, start.text);
  assert.deepEqual(start.json, { error: "Not found" });

  const call = await startCall(alice, conversation);
  await waitIncoming(b, call);
  const signal = { type: "offer", sdp: "v=0\r\neve\r\n" };
  const everything = () => {
    for (const action of ["accept_call", "decline_call", "end_call", "join_call"]) {
      e.calls.perform(action, { call_session_id: call.id });
    }
    e.calls.perform("send_signal", { call_session_id: call.id, target_user_id: alice.id, signal });
    e.calls.perform("send_signal", { call_session_id: call.id, target_user_id: bob.id, signal });
    e.calls.perform("toggle_mute", { call_session_id: call.id, muted: true });
    e.calls.perform("toggle_camera", { call_session_id: call.id, camera_off: true });
  };
  const restRefusals = async () => {
    for (const [method, path] of [
      ["GET", `${base}/active`],
      ["PUT", `${base}/${call.id}/accept`],
      ["PUT", `${base}/${call.id}/decline`],
      ["DELETE", `${base}/${call.id}`],
      ["POST", `${base}/${call.id}/join`],
    ]) {
      const response = await api(method, path, { token: eve.token });
      assert.equal(response.status, 404, `${method} ${path}: ${response.text}`);
      assert.deepEqual(response.json, { error: "Not found" });
    }
  };

  // While it rings.
  everything();
  await restRefusals();
  await sleep(SETTLE_MS);
  assert.deepEqual(a.calls.messages.items, [], "alice got nothing from eve");
  assert.deepEqual(b.calls.messages.items.map((m) => m.type), ["incoming_call"], "bob got nothing from eve");
  assert.equal(count(a.room, isCallLog(call)), 0, "not declined or ended by eve");

  // Still ringing: bob can accept, and the acceptor is bob.
  b.calls.perform("accept_call", { call_session_id: call.id });
  const accepted = await a.calls.next(ofCall(call, "call_accepted"), { what: "call_accepted" });
  assertUserPublic(accepted.accepted_by, bob);

  // While it is active.
  const markA = a.calls.messages.mark();
  const markB = b.calls.messages.mark();
  everything();
  await restRefusals();
  await a.calls.messages.none(() => true, SETTLE_MS, { from: markA, what: "event from eve" });
  await b.calls.messages.none(() => true, 0, { from: markB, what: "event from eve" });
  const active = await expectApi(200, "GET", `${base}/active`, { token: alice.token });
  assert.ok(!active.participants.some((p) => p.id === eve.id), "eve did not join");

  // Members have their own limits: the callee cannot end it over REST, the
  // caller cannot accept their own call.
  const notInitiator = await api("DELETE", `${base}/${call.id}`, { token: bob.token });
  assert.equal(notInitiator.status, 403, notInitiator.text);
  const ownCall = await api("PUT", `${base}/${call.id}/accept`, { token: alice.token });
  assert.equal(ownCall.status, 403, ownCall.text);

  await expectApi(200, "DELETE", `${base}/${call.id}`, { token: alice.token });
  await b.calls.next(ofCall(call, "call_ended"), { what: "call_ended" });
  await sleep(SETTLE_MS);
  assert.deepEqual(e.calls.messages.items, [], "eve's call stream got nothing at all");
  assert.equal(
    e.client.raw.filter((f) => JSON.stringify(f.json ?? {}).includes(`"call_session_id":${call.id}`)).length,
    0,
    "no frame about the call reached eve's socket",
  );
  const history = await callLogsInHistory(alice, call);
  assert.equal(history.length, 1);
  assertCallLog(history[0], call, alice, "ended");
});

test("the REST routes make the same transitions and send the same events", async (t) => {
  const [alice, bob] = await Promise.all([register("rest_alice"), register("rest_bob")]);
  const conversation = await direct(alice, bob);
  const a = await side(t, alice, conversation);
  const b = await side(t, bob, conversation);
  const base = callsPath(conversation);

  // The `call` wrapper is required; the type is validated.
  const unwrapped = await api("POST", base, { token: alice.token, body: { call_type: "audio" } });
  assert.equal(unwrapped.status, 400, unwrapped.text);
  const badType = await api("POST", base, { token: alice.token, body: { call: { call_type: "hologram" } } });
  assert.equal(badType.status, 422, badType.text);
  await a.calls.messages.none(() => true, 0);
  await b.calls.messages.none(() => true, 0, { what: "event for a refused start" });

  // Accept over REST tells the caller's socket (10.6 fixed).
  const first = await startCall(alice, conversation, "audio");
  await waitIncoming(b, first);
  // The call must be in the path's conversation, even for a member of both.
  const elsewhere = await createGroup(bob, "Elsewhere", [alice]);
  for (const [method, path] of [
    ["PUT", `${callsPath(elsewhere)}/${first.id}/accept`],
    ["PUT", `${callsPath(elsewhere)}/${first.id}/decline`],
    ["POST", `${callsPath(elsewhere)}/${first.id}/join`],
  ]) {
    const response = await api(method, path, { token: bob.token });
    assert.equal(response.status, 404, `${method} ${path}: ${response.text}`);
  }
  const wrongPlace = await api("DELETE", `${callsPath(elsewhere)}/${first.id}`, { token: alice.token });
  assert.equal(wrongPlace.status, 404, wrongPlace.text);
  // One call at a time per conversation.
  const second = await api("POST", base, { token: bob.token, body: { call: { call_type: "video" } } });
  assert.equal(second.status, 422, second.text);
  const accepted = await expectApi(200, "PUT", `${base}/${first.id}/accept`, { token: bob.token });
  assert.equal(accepted.data, undefined, "bare CallSession");
  assert.equal(accepted.status, "active");
  assert.equal(accepted.id, first.id);
  const event = await a.calls.next(ofCall(first, "call_accepted"), { what: "call_accepted from REST" });
  assertUserPublic(event.accepted_by, bob);
  const stillOne = await api("POST", base, { token: bob.token, body: { call: { call_type: "video" } } });
  assert.equal(stillOne.status, 422, "an active call blocks a new one too");
  const ended = await expectApi(200, "DELETE", `${base}/${first.id}`, { token: alice.token });
  assert.deepEqual(ended, { message: "Call ended" });
  const endedEvent = await b.calls.next(ofCall(first, "call_ended"), { what: "call_ended from REST" });
  assert.equal(endedEvent.status, "ended");
  const firstLog = await a.room.next(isCallLog(first), { what: "call log" });
  assertCallLog(firstLog.message, first, alice, "ended");
  assert.equal(typeof firstLog.message.call_session.started_at, "string");
  assert.equal(typeof firstLog.message.call_session.ended_at, "string");

  // Decline over REST: the caller's socket and the room hear of it.
  const next = await startCall(alice, conversation, "video");
  await waitIncoming(b, next);
  const declined = await expectApi(200, "PUT", `${base}/${next.id}/decline`, { token: bob.token });
  assert.equal(declined.status, "declined");
  const declinedEvent = await a.calls.next(ofCall(next, "call_declined"), { what: "call_declined from REST" });
  assertUserPublic(declinedEvent.declined_by, bob);
  await b.room.next(ofCall(next, "call_declined"), { what: "call_declined on the room" });
  const nextLog = await b.room.next(isCallLog(next), { what: "call log" });
  assertCallLog(nextLog.message, next, alice, "declined");

  await untilPast(next, RING_TIMEOUT_MS + 300);
  await sleep(SETTLE_MS);
  for (const s of [a, b]) {
    assert.equal(count(s.room, isCallLog(first)), 1);
    assert.equal(count(s.room, isCallLog(next)), 1);
    assert.equal(count(s.calls, (m) => m.type === "call_ended" && m.status === "missed"), 0, "nothing missed");
  }
  assert.deepEqual(a.calls.messages.items.map((m) => m.type), ["call_accepted", "call_declined"]);
  assert.deepEqual(b.calls.messages.items.map((m) => m.type), [
    "incoming_call",
    "call_ended",
    "incoming_call",
    "call_ended",
  ]);
});

test("in a group, one decline ends the ringing for every member (10.20)", async (t) => {
  const [alice, bob, carol] = await Promise.all([register("gd_alice"), register("gd_bob"), register("gd_carol")]);
  const conversation = await createGroup(alice, "Decline crew", [bob, carol]);
  const a = await side(t, alice, conversation);
  const b = await side(t, bob);
  const c = await side(t, carol);

  const call = await startCall(alice, conversation);
  await Promise.all([waitIncoming(b, call), waitIncoming(c, call)]);
  b.calls.perform("decline_call", { call_session_id: call.id });
  const declined = await a.calls.next(ofCall(call, "call_declined"), { what: "call_declined" });
  assertUserPublic(declined.declined_by, bob);
  // Carol's ringing modal is dismissed; she cannot pick up any more.
  const dismissed = await c.calls.next(ofCall(call, "call_ended"), { what: "carol dismissed" });
  assert.equal(dismissed.status, "declined");
  c.calls.perform("accept_call", { call_session_id: call.id });
  await a.room.next(isCallLog(call), { what: "call log" });
  await untilPast(call, RING_TIMEOUT_MS + 300);
  await sleep(SETTLE_MS);
  assert.deepEqual(a.calls.messages.items.map((m) => m.type), ["call_declined"]);
  for (const s of [b, c]) {
    assert.deepEqual(s.calls.messages.items.map((m) => m.type), ["incoming_call", "call_ended"]);
  }
  assert.equal(count(a.room, isCallLog(call)), 1);
  assertCallLog((await callLogsInHistory(carol, call))[0], call, alice, "declined");
});

test("racing transitions settle on one winner: one acceptor, one call log", async (t) => {
  const [alice, bob, carol] = await Promise.all([register("race_alice"), register("race_bob"), register("race_carol")]);
  const conversation = await createGroup(alice, "Race crew", [bob, carol]);
  const a = await side(t, alice, conversation);
  const b = await side(t, bob);
  const c = await side(t, carol);
  const base = callsPath(conversation);

  // Two members accept at once.
  const call = await startCall(alice, conversation);
  await Promise.all([waitIncoming(b, call), waitIncoming(c, call)]);
  const answers = await Promise.all(
    [bob, carol].map((u) => api("PUT", `${base}/${call.id}/accept`, { token: u.token })),
  );
  assert.deepEqual(
    answers.map((r) => r.status).sort(),
    [200, 422],
    `one accept wins: ${answers.map((r) => r.text).join(" | ")}`,
  );
  const winner = answers[0].status === 200 ? bob : carol;
  const loser = winner === bob ? carol : bob;
  const accepted = await a.calls.next(ofCall(call, "call_accepted"), { what: "call_accepted" });
  assertUserPublic(accepted.accepted_by, winner);
  const active = await expectApi(200, "GET", `${base}/active`, { token: alice.token });
  assert.ok(!active.participants.some((p) => p.id === loser.id), "the loser did not become a participant");

  // Everyone hangs up at once: the call ends once, with one log.
  const winnerSide = winner === bob ? b : c;
  winnerSide.calls.perform("end_call", { call_session_id: call.id });
  a.calls.perform("end_call", { call_session_id: call.id });
  const rest = await api("DELETE", `${base}/${call.id}`, { token: alice.token });
  assert.ok([200, 422].includes(rest.status), rest.text);
  await a.room.next(isCallLog(call), { what: "call log" });
  await untilPast(call, RING_TIMEOUT_MS + 300);
  await sleep(SETTLE_MS);
  assert.equal(count(a.room, isCallLog(call)), 1, "one call log");
  const history = await callLogsInHistory(alice, call);
  assert.equal(history.length, 1);
  assertCallLog(history[0], call, alice, "ended");
  for (const s of [a, b, c]) {
    assert.ok(count(s.calls, ofCall(call, "call_ended")) <= 1, `${s.user.username}: at most one call_ended`);
  }
  // The one who did not end it hears of it exactly once.
  const loserSide = loser === bob ? b : c;
  assert.equal(count(loserSide.calls, ofCall(call, "call_ended")), 1);
  assert.equal(count(a.calls, ofCall(call, "call_accepted")), 1);
});
