// Over the per-socket action rate limit the server transmits a rate_limit
// frame and drops the action. Runs against a server started with
// `--rate-limits on` and a small action rate; cable.rs passes its numbers in
// CABLE_ACTIONS_PER_SECOND and CABLE_ACTION_BURST.

import assert from "node:assert/strict";
import { test } from "node:test";

import { connectAndSubscribe, conversationChannel, createGroup, register, sleep } from "./helpers.mjs";

const perSecond = Number(process.env.CABLE_ACTIONS_PER_SECOND);
const burst = Number(process.env.CABLE_ACTION_BURST);

test("actions over the limit get a rate_limit frame and are dropped", async (t) => {
  assert.ok(perSecond > 0 && burst > 0, "CABLE_ACTIONS_PER_SECOND and CABLE_ACTION_BURST are set");
  const [alice, bob] = await Promise.all([register("rl_alice"), register("rl_bob")]);
  const conversation = await createGroup(alice, "Rate limit", [bob]);
  const bobSide = await connectAndSubscribe(t, bob.token, conversationChannel(conversation));
  const aliceSide = await connectAndSubscribe(t, alice.token, conversationChannel(conversation));

  const attempts = burst + 15;
  for (let i = 0; i < attempts; i++) aliceSide.sub.perform("typing");

  const isLimit = (m) => m.error === "rate_limit";
  const isStart = (m) => m.type === "typing_start" && m.user_id === alice.id;
  // Every attempt is answered: either performed (bob sees typing_start) or
  // refused (alice gets rate_limit).
  await aliceSide.sub.messages.count(isLimit, 1, { what: "rate_limit frames" });
  const deadline = Date.now() + 5000;
  while (
    bobSide.sub.messages.filter(isStart).length + aliceSide.sub.messages.filter(isLimit).length < attempts &&
    Date.now() < deadline
  ) {
    await sleep(20);
  }
  await sleep(300);
  const limited = aliceSide.sub.messages.filter(isLimit);
  const performed = bobSide.sub.messages.filter(isStart).length;
  assert.equal(performed + limited.length, attempts, `${performed} performed + ${limited.length} refused`);
  // The burst passes (plus at most what refilled meanwhile); the rest is refused.
  assert.ok(performed >= burst, `at least the burst of ${burst} passed, got ${performed}`);
  assert.ok(performed <= burst + 2, `at most the burst and a refill passed, got ${performed}`);
  for (const frame of limited) {
    assert.deepEqual(frame, { error: "rate_limit", message: "Too many typing requests. Slow down." });
  }
  // The frame carries the subscription's identifier.
  const raw = aliceSide.client.raw.filter((f) => f.json?.message?.error === "rate_limit");
  assert.ok(raw.length > 0 && raw.every((f) => f.json.identifier === aliceSide.sub.identifier));
  // The socket stays open; after a refill an action passes again.
  await sleep(Math.ceil(1000 / perSecond) + 200);
  const mark = bobSide.sub.messages.mark();
  aliceSide.sub.perform("stop_typing");
  const stop = await bobSide.sub.next((m) => m.type === "typing_stop" && m.user_id === alice.id, { from: mark });
  assert.equal(stop.user_id, alice.id);
  assert.equal(aliceSide.client.raw.filter((f) => f.json?.type === "disconnect").length, 0);
});
