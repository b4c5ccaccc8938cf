// Logout: the token is revoked and every socket opened with it is closed with
// `disconnect unauthorized, reconnect false`, which the official client obeys.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  api,
  connect,
  connectAndSubscribe,
  createGroup,
  login,
  register,
  sleep,
} from "./helpers.mjs";

const USER = { channel: "UserChannel" };
const isDisconnect = (f) => f.json?.type === "disconnect";

test("logout closes that token's sockets within a second; the client does not reconnect", async (t) => {
  const [alice, bob] = await Promise.all([register("lo_alice"), register("lo_bob")]);
  const otherToken = await login(alice);
  const first = await connectAndSubscribe(t, alice.token, USER, "first");
  const second = await connectAndSubscribe(t, alice.token, USER, "second");
  const otherDevice = await connectAndSubscribe(t, otherToken, USER, "other device");

  const response = await api("DELETE", "/auth/logout", { token: alice.token });
  assert.equal(response.status, 200, response.text);
  const loggedOutAt = Date.now();

  for (const side of [first, second]) {
    const frame = await side.client.raw.find(isDisconnect, { timeout: 3000, what: "disconnect" });
    assert.deepEqual(frame.json, { type: "disconnect", reason: "unauthorized", reconnect: false });
    assert.ok(
      frame.at - loggedOutAt <= 1000,
      `disconnect arrived ${frame.at - loggedOutAt} ms after the logout answered`,
    );
    const gone = await side.sub.events.find((e) => e.kind === "disconnected");
    assert.equal(gone.data.willAttemptReconnect, false);
  }

  // The other device's token is untouched: it still gets events.
  await createGroup(bob, "After logout", [alice]);
  const event = await otherDevice.sub.next((m) => m.type === "new_conversation");
  assert.equal(event.conversation.name, "After logout");
  assert.equal(otherDevice.client.raw.filter(isDisconnect).length, 0);

  // Well past the client's reconnect delays: no new socket was opened.
  await sleep(1500);
  for (const side of [first, second]) {
    assert.equal(side.client.sockets.length, 1, `${side.client.label} did not reconnect`);
    assert.equal(side.client.consumer.connection.isActive(), false);
    assert.equal(
      side.client.raw.filter((f) => f.json?.message?.type === "new_conversation").length,
      0,
      "a closed socket got no later event",
    );
  }
});

test("a revoked token is refused at connect with disconnect unauthorized, and not retried", async (t) => {
  const alice = await register("lo2_alice");
  const response = await api("DELETE", "/auth/logout", { token: alice.token });
  assert.equal(response.status, 200);
  const client = connect(t, alice.token);
  const sub = client.subscribe(USER);
  const frame = await client.raw.find(() => true, { what: "first frame" });
  assert.deepEqual(frame.json, { type: "disconnect", reason: "unauthorized", reconnect: false });
  await sleep(1500);
  assert.equal(client.raw.filter((f) => f.json?.type === "welcome").length, 0, "no welcome");
  assert.equal(sub.events.filter((e) => e.kind === "connected").length, 0, "never confirmed");
  assert.equal(client.sockets.length, 1, "the client did not retry");
  // REST refuses the token too.
  const me = await api("GET", "/api/v1/users/me", { token: alice.token });
  assert.equal(me.status, 401);
});

test("a garbage token is refused the same way", async (t) => {
  const client = connect(t, "not-a-jwt");
  const sub = client.subscribe(USER);
  const frame = await client.firstFrame();
  assert.deepEqual(frame.json, { type: "disconnect", reason: "unauthorized", reconnect: false });
  await sleep(1000);
  assert.equal(client.sockets.length, 1, "the client did not retry");
  assert.equal(sub.events.filter((e) => e.kind === "connected").length, 0, "never confirmed");
});
