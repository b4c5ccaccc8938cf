// Presence (contract 6.6.2, 7): initial_presence to the subscriber, online and
// offline status events without a `type`, counted per user.
//
// Other tests run alongside on the same server, so every assertion looks only
// at this test's users.

import assert from "node:assert/strict";
import { test } from "node:test";

import { connect, connectAndSubscribe, login, register, sleep } from "./helpers.mjs";

const PRESENCE = { channel: "PresenceChannel" };
const statusOf = (user, status) => (m) => m.user_id === user.id && m.status === status;

test("initial_presence, then online and offline of another user", async (t) => {
  const [watcher, omar] = await Promise.all([register("pr_watch"), register("pr_omar")]);
  const { client, sub } = await connectAndSubscribe(t, watcher.token, PRESENCE);

  const roster = await sub.next((m) => m.type === "initial_presence");
  assert.deepEqual(Object.keys(roster).sort(), ["online_user_ids", "type"]);
  assert.ok(Array.isArray(roster.online_user_ids));
  assert.ok(roster.online_user_ids.every(Number.isInteger), "ids are numbers");
  assert.ok(roster.online_user_ids.includes(watcher.id), "the subscriber is in its own roster");
  assert.ok(!roster.online_user_ids.includes(omar.id), "omar is not connected yet");
  // initial_presence goes to the subscribing connection only, once.
  assert.equal(
    client.raw.filter((f) => f.json?.message?.type === "initial_presence").length,
    1,
  );
  // The subscriber is announced to everyone, itself included.
  const self = await sub.next(statusOf(watcher, "online"));
  assert.deepEqual(self, { user_id: watcher.id, username: watcher.username, status: "online" });

  const omarSide = await connectAndSubscribe(t, omar.token, PRESENCE);
  const online = await sub.next(statusOf(omar, "online"));
  assert.deepEqual(online, { user_id: omar.id, username: omar.username, status: "online" });
  const omarRoster = await omarSide.sub.next((m) => m.type === "initial_presence");
  assert.ok(omarRoster.online_user_ids.includes(omar.id));
  assert.ok(omarRoster.online_user_ids.includes(watcher.id));
  assert.equal(
    sub.messages.filter((m) => m.type === "initial_presence").length,
    1,
    "another user's subscription sends no roster to the watcher",
  );

  await omarSide.client.close();
  const offline = await sub.next(statusOf(omar, "offline"));
  assert.deepEqual(offline, { user_id: omar.id, username: omar.username, status: "offline" });
});

test("a user with two devices goes offline only when the last one closes", async (t) => {
  const [watcher, rana] = await Promise.all([register("pr2_watch"), register("pr2_rana")]);
  const secondToken = await login(rana);
  const { sub } = await connectAndSubscribe(t, watcher.token, PRESENCE);

  const phone = await connectAndSubscribe(t, rana.token, PRESENCE, "phone");
  await sub.next(statusOf(rana, "online"));
  const desktop = await connectAndSubscribe(t, secondToken, PRESENCE, "desktop");
  const desktopRoster = await desktop.sub.next((m) => m.type === "initial_presence");
  assert.ok(desktopRoster.online_user_ids.includes(rana.id));

  await phone.client.close();
  // The desktop is still connected: no offline, however long we wait.
  await sub.messages.none(statusOf(rana, "offline"), 1500, { what: "offline while a device is connected" });
  // A new subscriber still sees rana online.
  const late = connect(t, watcher.token, "late");
  const lateSub = late.subscribe(PRESENCE);
  const lateRoster = await lateSub.next((m) => m.type === "initial_presence");
  assert.ok(lateRoster.online_user_ids.includes(rana.id), "rana is online with one device left");

  await desktop.client.close();
  const offline = await sub.next(statusOf(rana, "offline"));
  assert.deepEqual(offline, { user_id: rana.id, username: rana.username, status: "offline" });
  await sleep(300);
  assert.equal(sub.messages.filter(statusOf(rana, "offline")).length, 1, "one offline event");
});

test("unsubscribing from presence announces offline; the ping action is accepted", async (t) => {
  const [watcher, lena] = await Promise.all([register("pr3_watch"), register("pr3_lena")]);
  const { sub } = await connectAndSubscribe(t, watcher.token, PRESENCE);
  const lenaSide = await connectAndSubscribe(t, lena.token, PRESENCE);
  await sub.next(statusOf(lena, "online"));
  lenaSide.sub.perform("ping");
  await sub.messages.none(statusOf(lena, "offline"), 300, { what: "offline after ping" });
  lenaSide.sub.unsubscribe();
  const offline = await sub.next(statusOf(lena, "offline"));
  assert.equal(offline.username, lena.username);
  // The socket itself is still open and usable.
  await lenaSide.client.subscribe({ channel: "UserChannel" }).confirmed();
});
