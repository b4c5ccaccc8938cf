// Read state through the official client: the ConversationChannel actions
// `mark_read` and `mark_delivered`, and the UserChannel events
// `conversation_read`, `read_receipt`, `message_delivered`, `mention` and
// `mention_removed` (all beyond the reference, additive).

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  assertKeys,
  connectAndSubscribe,
  conversationChannel,
  createGroup,
  expectApi,
  login,
  register,
  sendMessage,
} from "./helpers.mjs";

const userChannel = { channel: "UserChannel" };

async function conversation(user, id) {
  const body = await expectApi(200, "GET", `/api/v1/conversations/${id}`, { token: user.token });
  return body.data;
}

test("mark_read on one device clears the badge on the user's other devices", async (t) => {
  const [alice, bob] = await Promise.all([register("rs_alice"), register("rs_bob")]);
  const room = await createGroup(alice, "Badges", [bob]);
  for (const content of ["one", "two", "three"]) await sendMessage(alice, room, content);
  assert.equal((await conversation(bob, room)).unread_count, 3);

  // Bob's phone reads in the conversation; his desktop only has his stream.
  const phone = await connectAndSubscribe(t, bob.token, conversationChannel(room), "phone");
  const desktopToken = await login(bob);
  const desktop = await connectAndSubscribe(t, desktopToken, userChannel, "desktop");

  phone.sub.perform("mark_read", { seq: 2 });
  const first = await desktop.sub.next((m) => m.type === "conversation_read");
  assertKeys(
    first,
    ["type", "conversation_id", "last_read_seq", "read_at", "last_delivered_seq", "last_seq", "unread_count", "mention_count"],
    "conversation_read",
  );
  assert.deepEqual(
    [first.conversation_id, first.last_read_seq, first.unread_count, first.last_seq],
    [room, 2, 1, 3],
  );
  assert.equal((await conversation(bob, room)).unread_count, 1);

  // Without a seq: everything; a repeat tells no one.
  phone.sub.perform("mark_read");
  const second = await desktop.sub.next((m) => m.type === "conversation_read" && m.last_read_seq === 3);
  assert.equal(second.unread_count, 0);
  const seen = desktop.sub.messages.mark();
  phone.sub.perform("mark_read", { seq: 1 });
  await desktop.sub.messages.none((m) => m.type === "conversation_read", 400, { from: seen });
  const listed = await expectApi(200, "GET", "/api/v1/conversations", { token: bob.token });
  const row = listed.data.find((c) => c.id === room);
  assert.deepEqual([row.last_read_seq, row.unread_count, row.mention_count], [3, 0, 0]);
  assert.equal(row.last_message.content, "three");
});

test("delivery and read ticks in a direct conversation, and the privacy switch", async (t) => {
  const [alice, bob] = await Promise.all([register("tick_alice"), register("tick_bob")]);
  const dm = await expectApi(201, "POST", "/api/v1/conversations", {
    token: alice.token,
    body: { conversation_type: "direct", member_ids: [bob.id] },
  });
  const room = dm.data.id;
  const aliceStream = (await connectAndSubscribe(t, alice.token, userChannel, "alice")).sub;
  const bobRoom = (await connectAndSubscribe(t, bob.token, conversationChannel(room), "bob")).sub;

  // Bob's client acknowledges what it received: alice gets the delivered tick.
  const sent = await sendMessage(alice, room, "are you there?");
  const arrived = await bobRoom.next((m) => m.type === "new_message" && m.message.id === sent.id);
  bobRoom.perform("mark_delivered", { seq: arrived.message.seq });
  const delivered = await aliceStream.next((m) => m.type === "message_delivered");
  assert.deepEqual(delivered, {
    type: "message_delivered",
    conversation_id: room,
    user_id: bob.id,
    last_delivered_seq: sent.seq,
  });

  // Bob reads it: the read tick.
  bobRoom.perform("mark_read", { seq: sent.seq });
  const read = await aliceStream.next((m) => m.type === "read_receipt");
  assert.deepEqual(
    [read.conversation_id, read.user_id, read.last_read_seq, typeof read.read_at],
    [room, bob.id, sent.seq, "string"],
  );

  // Bob turns receipts off: reading delivers, but sends no read tick.
  await expectApi(200, "PATCH", `/api/v1/users/${bob.id}`, {
    token: bob.token,
    body: { read_receipts: false },
  });
  const next = await sendMessage(alice, room, "hello?");
  const mark = aliceStream.messages.mark();
  bobRoom.perform("mark_read", { seq: next.seq });
  const tick = await aliceStream.next((m) => m.type === "message_delivered" && m.last_delivered_seq === next.seq);
  assert.equal(tick.user_id, bob.id);
  await aliceStream.messages.none((m) => m.type === "read_receipt", 400, { from: mark });
  const receipts = await expectApi(200, "GET", `/api/v1/conversations/${room}/receipts`, {
    token: alice.token,
  });
  const bobs = receipts.data.find((r) => r.user_id === bob.id);
  assert.deepEqual([bobs.last_read_seq, bobs.last_delivered_seq], [null, next.seq]);
});

test("mentions reach the mentioned user's stream, and edits take them back", async (t) => {
  const [alice, bob, carol] = await Promise.all([
    register("men_alice"),
    register("men_bob"),
    register("men_carol"),
  ]);
  const room = await createGroup(alice, "Mentions", [bob, carol]);
  const bobStream = (await connectAndSubscribe(t, bob.token, userChannel, "bob")).sub;
  const carolStream = (await connectAndSubscribe(t, carol.token, userChannel, "carol")).sub;

  const sent = await sendMessage(alice, room, `ping @${bob.username}`);
  assert.deepEqual(sent.mentions, [bob.id]);
  const mention = await bobStream.next((m) => m.type === "mention");
  assert.equal(mention.conversation_id, room);
  assert.deepEqual(mention.message, sent);
  assert.equal((await conversation(bob, room)).mention_count, 1);

  await expectApi(200, "PATCH", `/api/v1/conversations/${room}/messages/${sent.id}`, {
    token: alice.token,
    body: { content: `ping @${carol.username}` },
  });
  const removed = await bobStream.next((m) => m.type === "mention_removed");
  assert.deepEqual(removed, { type: "mention_removed", conversation_id: room, message_id: sent.id });
  const moved = await carolStream.next((m) => m.type === "mention");
  assert.deepEqual(moved.message.mentions, [carol.id]);
  assert.equal((await conversation(bob, room)).mention_count, 0);
  const list = await expectApi(200, "GET", "/api/v1/mentions", { token: carol.token });
  assert.deepEqual(list.data.messages.map((m) => m.id), [sent.id]);
});
