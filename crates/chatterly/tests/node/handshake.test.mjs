// Connection, subscription confirmations and rejections, identifier echo.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  connect,
  conversationChannel,
  createGroup,
  register,
  sendMessage,
} from "./helpers.mjs";

test("welcome, actioncable-v1-json, and a confirmation for each of the four channels", async (t) => {
  const [alice, bob] = await Promise.all([register("hs_alice"), register("hs_bob")]);
  const conversation = await createGroup(alice, "Handshake", [bob]);
  const client = connect(t, alice.token);
  const subs = [
    { channel: "PresenceChannel" },
    { channel: "CallChannel" },
    { channel: "UserChannel" },
    conversationChannel(conversation),
  ].map((params) => client.subscribe(params));
  for (const sub of subs) await sub.confirmed();

  const first = await client.firstFrame();
  assert.deepEqual(first.json, { type: "welcome" }, `first frame: ${first.text}`);
  assert.equal(client.raw.filter((f) => f.json?.type === "welcome").length, 1, "one welcome");
  assert.equal(client.socket.protocol, "actioncable-v1-json");
  assert.equal(client.sockets.length, 1, "one socket, no reconnect");

  for (const sub of subs) {
    const confirmations = client.raw.filter(
      (f) => f.json?.type === "confirm_subscription" && f.json.identifier === sub.identifier,
    );
    assert.equal(confirmations.length, 1, `one confirmation for ${sub.identifier}`);
    assert.deepEqual(
      Object.keys(confirmations[0].json).sort(),
      ["identifier", "type"],
      confirmations[0].text,
    );
  }
});

test("the identifier is echoed byte for byte, per subscription", async (t) => {
  const [alice, bob] = await Promise.all([register("echo_alice"), register("echo_bob")]);
  const conversation = await createGroup(alice, "Echo", [bob]);
  const client = connect(t, bob.token);
  // Unusual key order, escapes, non-ASCII, nesting: whatever the client
  // sends must come back as the same string, or the client drops the frame.
  const odd = client.subscribe({
    conversation_id: conversation,
    channel: "ConversationChannel",
    note: 'ünïcödé "quoted" \\ / \u2028 😀 <script>',
    nested: { b: 1, a: [1, 2.5, null, true] },
  });
  const plain = client.subscribe(conversationChannel(conversation));
  await odd.confirmed();
  await plain.confirmed();
  assert.notEqual(odd.identifier, plain.identifier);

  const sent = await sendMessage(alice, conversation, "echo me");
  for (const sub of [odd, plain]) {
    const event = await sub.next((m) => m.type === "new_message" && m.message.id === sent.id);
    assert.equal(event.message.content, "echo me");
    const frames = client.raw.filter(
      (f) => f.json?.message?.type === "new_message" && f.json.identifier === sub.identifier,
    );
    assert.equal(frames.length, 1, `exactly one frame carries ${sub.identifier}`);
  }
});

test("unknown channels, foreign and missing conversations are rejected; the socket stays usable", async (t) => {
  const [alice, bob, carol] = await Promise.all([
    register("rej_alice"),
    register("rej_bob"),
    register("rej_carol"),
  ]);
  const theirs = await createGroup(alice, "Not for carol", [bob]);
  const client = connect(t, carol.token);
  const unknown = client.subscribe({ channel: "NopeChannel" });
  const foreign = client.subscribe(conversationChannel(theirs));
  const missing = client.subscribe(conversationChannel(2 ** 40));
  const noId = client.subscribe({ channel: "ConversationChannel" });
  const badSince = client.subscribe(conversationChannel(theirs, { since_seq: -1 }));
  for (const sub of [unknown, foreign, missing, noId, badSince]) await sub.rejected();

  for (const sub of [unknown, foreign, missing, noId]) {
    const frames = client.raw.filter(
      (f) => f.json?.type === "reject_subscription" && f.json.identifier === sub.identifier,
    );
    assert.equal(frames.length, 1, `one rejection for ${sub.identifier}`);
  }
  // A rejected subscription receives nothing of that conversation.
  await sendMessage(alice, theirs, "private");
  const mine = await client.subscribe({ channel: "UserChannel" }).confirmed();
  assert.ok(mine);
  await foreign.messages.none(() => true, 300, { what: "message for a rejected subscription" });
  assert.equal(
    client.raw.filter((f) => f.json?.message?.type === "new_message").length,
    0,
    "no conversation event reaches a non-member",
  );
});
