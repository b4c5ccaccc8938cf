// The conversation and user streams: every REST write emits its event
// (contract 6.7), to members only.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  assertKeys,
  assertUserPublic,
  connect,
  connectAndSubscribe,
  conversationChannel,
  createGroup,
  expectApi,
  register,
  sendMessage,
} from "./helpers.mjs";

test("each conversation write emits its event, in order, with the contract payload", async (t) => {
  const [alice, bob, dave] = await Promise.all([
    register("ev_alice"),
    register("ev_bob"),
    register("ev_dave"),
  ]);
  const conversation = await createGroup(alice, "Events", [bob]);
  const { sub } = await connectAndSubscribe(t, bob.token, conversationChannel(conversation));
  const base = `/api/v1/conversations/${conversation}`;

  // new_message: the event carries the same Message the sender got back.
  const sent = await sendMessage(alice, conversation, "hello events");
  const created = await sub.next((m) => m.type === "new_message" && m.message.id === sent.id);
  assertKeys(created, ["type", "message"], "new_message");
  assert.deepEqual(created.message, sent);
  // Published after the commit: a reader that reacts to the event finds it.
  const page = await expectApi(200, "GET", `${base}/messages`, { token: bob.token });
  assert.ok(page.data.messages.some((m) => m.id === sent.id), "the announced message is readable");

  // message_edited (not message_updated), with edited_at set.
  const edited = await expectApi(200, "PATCH", `${base}/messages/${sent.id}`, {
    token: alice.token,
    body: { content: "hello, edited" },
  });
  const editEvent = await sub.next((m) => m.type === "message_edited");
  assertKeys(editEvent, ["type", "message"], "message_edited");
  assert.equal(editEvent.message.id, sent.id);
  assert.equal(editEvent.message.content, "hello, edited");
  assert.equal(typeof editEvent.message.edited_at, "string");
  assert.deepEqual(editEvent.message, edited);

  // reaction_added: the Reaction the reactor got back.
  const reaction = await expectApi(201, "POST", "/api/v1/reactions", {
    token: bob.token,
    body: { message_id: sent.id, emoji: "👍" },
  });
  const added = await sub.next((m) => m.type === "reaction_added");
  assertKeys(added, ["type", "reaction"], "reaction_added");
  assert.deepEqual(added.reaction, reaction);
  assert.deepEqual(
    { emoji: reaction.emoji, message_id: reaction.message_id, user_id: reaction.user_id },
    { emoji: "👍", message_id: sent.id, user_id: bob.id },
  );

  // reaction_removed
  await expectApi(200, "DELETE", `/api/v1/reactions/${reaction.id}`, { token: bob.token });
  const removed = await sub.next((m) => m.type === "reaction_removed");
  assert.equal(removed.reaction_id, reaction.id);
  assert.equal(removed.message_id, sent.id);

  // message_deleted, with the integer id.
  await expectApi(200, "DELETE", `${base}/messages/${sent.id}`, { token: alice.token });
  const deleted = await sub.next((m) => m.type === "message_deleted");
  assert.equal(deleted.message_id, sent.id);
  assert.ok(Number.isInteger(deleted.message_id));

  // member_joined: the creator is an admin and may add members.
  await expectApi(201, "POST", `${base}/memberships`, {
    token: alice.token,
    body: { user_id: dave.id },
  });
  const joined = await sub.next((m) => m.type === "member_joined");
  assertKeys(joined, ["type", "user"], "member_joined");
  assertUserPublic(joined.user, dave);
  assert.equal(joined.user.display_name, dave.displayName);

  // member_left: dave leaves by himself.
  await expectApi(200, "DELETE", `${base}/memberships/${dave.id}`, { token: dave.token });
  const left = await sub.next((m) => m.type === "member_left");
  assert.equal(left.user_id, dave.id);

  // Exactly these events, once each, in the order of the writes.
  const types = sub.messages.items.map((m) => m.type);
  assert.deepEqual(types, [
    "new_message",
    "message_edited",
    "reaction_added",
    "reaction_removed",
    "message_deleted",
    "member_joined",
    "member_left",
  ]);
  // A failed write emits nothing.
  await expectApi(422, "POST", `${base}/messages`, {
    token: alice.token,
    body: { content: "", message_type: "text" },
  });
  await sub.messages.none(() => true, 300, { from: types.length, what: "event after a failed write" });
});

test("new_conversation reaches every member but the creator on UserChannel", async (t) => {
  const [alice, bob, carol] = await Promise.all([
    register("nc_alice"),
    register("nc_bob"),
    register("nc_carol"),
  ]);
  const streams = {};
  for (const user of [alice, bob, carol]) {
    streams[user.username] = (await connectAndSubscribe(t, user.token, { channel: "UserChannel" })).sub;
  }
  const conversation = await createGroup(alice, "Launch crew", [bob, carol]);
  for (const user of [bob, carol]) {
    const event = await streams[user.username].next((m) => m.type === "new_conversation");
    assertKeys(event, ["type", "conversation"], "new_conversation");
    const c = event.conversation;
    assertKeys(
      c,
      ["id", "conversation_type", "created_at", "created_by_id", "description", "member_count", "members", "name"],
      "ConversationWithMembers",
    );
    assert.equal(c.id, conversation);
    assert.equal(c.conversation_type, "group");
    assert.equal(c.name, "Launch crew");
    assert.equal(c.created_by_id, alice.id);
    assert.equal(c.member_count, 3);
    assert.deepEqual(c.members.map((m) => m.id).sort((a, b) => a - b), [alice.id, bob.id, carol.id].sort((a, b) => a - b));
    c.members.forEach((m) => assertUserPublic(m));
  }
  // A direct conversation too.
  const direct = await expectApi(201, "POST", "/api/v1/conversations", {
    token: bob.token,
    body: { conversation_type: "direct", member_ids: [carol.id] },
  });
  const dm = await streams[carol.username].next(
    (m) => m.type === "new_conversation" && m.conversation.id === direct.data.id,
  );
  assert.equal(dm.conversation.conversation_type, "direct");
  // The creators got nothing.
  await streams[alice.username].messages.none(() => true, 400, { what: "event for the creator" });
  assert.equal(
    streams[bob.username].messages.filter((m) => m.conversation?.id === direct.data.id).length,
    0,
    "bob created the direct conversation",
  );
});

test("a member added later gets new_conversation on UserChannel, with the history read", async (t) => {
  const [alice, bob, erin] = await Promise.all([
    register("add_alice"),
    register("add_bob"),
    register("add_erin"),
  ]);
  const conversation = await createGroup(alice, "Added later", [bob]);
  await sendMessage(alice, conversation, "before erin joined");
  const erinSide = await connectAndSubscribe(t, erin.token, { channel: "UserChannel" });
  const bobSide = await connectAndSubscribe(t, bob.token, { channel: "UserChannel" });
  await expectApi(201, "POST", `/api/v1/conversations/${conversation}/memberships`, {
    token: alice.token,
    body: { user_id: erin.id },
  });
  const event = await erinSide.sub.next((m) => m.type === "new_conversation");
  assert.equal(event.conversation.id, conversation);
  assert.equal(event.conversation.member_count, 3);
  assert.ok(event.conversation.members.some((m) => m.id === erin.id));
  // Rendered for erin: what was said before she joined is not unread.
  assert.equal(event.conversation.unread_count, 0);
  assert.equal(event.conversation.last_read_seq, 1);
  // Only the added person is told; existing members get member_joined on
  // the conversation stream instead.
  await bobSide.sub.messages.none((m) => m.type === "new_conversation", 300, { what: "new_conversation for bob" });
});

test("a removed member stops receiving the conversation's events at once", async (t) => {
  const [alice, bob, carol] = await Promise.all([
    register("rm_alice"),
    register("rm_bob"),
    register("rm_carol"),
  ]);
  const conversation = await createGroup(alice, "Removal", [bob, carol]);
  const bobSide = await connectAndSubscribe(t, bob.token, conversationChannel(conversation));
  const carolSide = await connectAndSubscribe(t, carol.token, conversationChannel(conversation));
  const aliceSide = await connectAndSubscribe(t, alice.token, conversationChannel(conversation));

  const before = await sendMessage(alice, conversation, "before removal");
  await carolSide.sub.next((m) => m.type === "new_message" && m.message.id === before.id);
  const mark = carolSide.sub.messages.mark();

  await expectApi(200, "DELETE", `/api/v1/conversations/${conversation}/memberships/${carol.id}`, {
    token: alice.token,
  });
  // Right after the removal, with no pause: nothing more reaches carol.
  const after = await sendMessage(alice, conversation, "after removal");
  aliceSide.sub.perform("typing");
  await bobSide.sub.next((m) => m.type === "member_left" && m.user_id === carol.id);
  await bobSide.sub.next((m) => m.type === "new_message" && m.message.id === after.id);
  await bobSide.sub.next((m) => m.type === "typing_start" && m.user_id === alice.id);
  await carolSide.sub.messages.none(
    (m) => m.type !== "member_left",
    500,
    { from: mark, what: "event after removal" },
  );
  assert.equal(
    carolSide.client.raw.filter((f) => JSON.stringify(f.json ?? {}).includes("after removal")).length,
    0,
    "the message after the removal never reached carol's socket",
  );
  // Carol may not subscribe again.
  await carolSide.client.subscribe(conversationChannel(conversation, { again: true })).rejected();
});
