// Typing indicators: typing_start / typing_stop, the display_name fallback,
// expiry by themselves, and nothing written to the database.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  connectAndSubscribe,
  conversationChannel,
  createGroup,
  expectApi,
  register,
} from "./helpers.mjs";

test("typing and stop_typing reach every member, the sender too, and write nothing", async (t) => {
  const [alice, bob] = await Promise.all([register("ty_alice"), register("ty_bob")]);
  const conversation = await createGroup(alice, "Typing", [bob]);
  const bobSide = await connectAndSubscribe(t, bob.token, conversationChannel(conversation));
  const aliceSide = await connectAndSubscribe(t, alice.token, conversationChannel(conversation));

  aliceSide.sub.perform("typing");
  for (const side of [bobSide, aliceSide]) {
    const start = await side.sub.next((m) => m.type === "typing_start");
    assert.deepEqual(
      { type: start.type, user_id: start.user_id, display_name: start.display_name },
      { type: "typing_start", user_id: alice.id, display_name: alice.displayName },
    );
  }
  aliceSide.sub.perform("stop_typing");
  for (const side of [bobSide, aliceSide]) {
    const stop = await side.sub.next((m) => m.type === "typing_stop");
    assert.equal(stop.user_id, alice.id);
  }
  assert.equal(bobSide.sub.messages.filter((m) => m.type === "typing_start").length, 1);
  assert.equal(bobSide.sub.messages.filter((m) => m.type === "typing_stop").length, 1);

  // Typing is ephemeral: the history stays empty.
  const history = await expectApi(200, "GET", `/api/v1/conversations/${conversation}/messages`, {
    token: bob.token,
  });
  assert.deepEqual(history.data.messages, []);
});

test("typing_start falls back to the username when display_name is blank or absent", async (t) => {
  const [alice, blank, absent] = await Promise.all([
    register("tyf_alice"),
    register("tyf_blank", { displayName: "" }),
    register("tyf_absent", { displayName: null }),
  ]);
  const conversation = await createGroup(alice, "Fallback", [blank, absent]);
  const watcher = await connectAndSubscribe(t, alice.token, conversationChannel(conversation));
  for (const user of [blank, absent]) {
    const side = await connectAndSubscribe(t, user.token, conversationChannel(conversation));
    side.sub.perform("typing");
    const start = await watcher.sub.next((m) => m.type === "typing_start" && m.user_id === user.id);
    assert.equal(start.display_name, user.username);
  }
});

test("a typing indicator without stop_typing expires by itself after about 8 s", { timeout: 30000 }, async (t) => {
  const [alice, bob] = await Promise.all([register("tye_alice"), register("tye_bob")]);
  const conversation = await createGroup(alice, "Expiry", [bob]);
  const bobSide = await connectAndSubscribe(t, bob.token, conversationChannel(conversation));
  const aliceSide = await connectAndSubscribe(t, alice.token, conversationChannel(conversation));

  aliceSide.sub.perform("typing");
  await bobSide.sub.next((m) => m.type === "typing_start" && m.user_id === alice.id);
  const started = Date.now();
  const stop = await bobSide.sub.next((m) => m.type === "typing_stop" && m.user_id === alice.id, {
    timeout: 15000,
    what: "typing_stop after expiry",
  });
  const elapsed = Date.now() - started;
  assert.ok(stop);
  assert.ok(elapsed >= 6500, `typing expired too early: after ${elapsed} ms`);
  assert.ok(elapsed <= 13000, `typing expired too late: after ${elapsed} ms`);
  // The socket is still open and the indicator works again.
  aliceSide.sub.perform("typing");
  await bobSide.sub.messages.count((m) => m.type === "typing_start" && m.user_id === alice.id, 2);
});

test("closing the socket while typing stops the indicator", async (t) => {
  const [alice, bob] = await Promise.all([register("tyc_alice"), register("tyc_bob")]);
  const conversation = await createGroup(alice, "Closing", [bob]);
  const bobSide = await connectAndSubscribe(t, bob.token, conversationChannel(conversation));
  const aliceSide = await connectAndSubscribe(t, alice.token, conversationChannel(conversation));
  aliceSide.sub.perform("typing");
  await bobSide.sub.next((m) => m.type === "typing_start" && m.user_id === alice.id);
  await aliceSide.client.close();
  const stop = await bobSide.sub.next((m) => m.type === "typing_stop" && m.user_id === alice.id, {
    timeout: 3000,
  });
  assert.equal(stop.user_id, alice.id);
});
