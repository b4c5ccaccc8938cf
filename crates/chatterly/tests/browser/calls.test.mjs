// Calls in the web client with Chromium's fake camera and microphone: an
// audio call accepted, muted and ended; a video call declined; a call nobody
// answers, dismissed by the server's `call_ended` (missed). The server rings
// for a few seconds only (--call-ring-timeout).

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { launch, person, screenshot, Server, signIn, until } from "./helpers.mjs";

const RING_SECONDS = 4;

describe("calling in the web client", () => {
  let server;
  let browser;
  let alice;
  let bob;
  let users;

  before(async () => {
    server = await new Server(["--rate-limits", "off", "--call-ring-timeout", String(RING_SECONDS)]).start();
    browser = await launch({ media: true });
    const a = await server.register("alice", "Alice Smith");
    const b = await server.register("bob", "Bob Jones");
    const dm = await server.api("POST", "/api/v1/conversations", {
      token: a.token,
      body: { conversation_type: "direct", member_ids: [b.id] },
    });
    assert.equal(dm.status, 201);
    users = { a, b, dm: dm.body.data.id };
    alice = await person(browser, server, { media: true });
    bob = await person(browser, server, { media: true });
    await signIn(alice.page, a);
    await signIn(bob.page, b);
    await alice.page.goto(`${server.url}/c/${users.dm}`);
    await bob.page.goto(`${server.url}/c/${users.dm}`);
    await alice.page.getByRole("heading", { name: "Bob Jones", level: 2 }).waitFor();
    await bob.page.getByRole("heading", { name: "Alice Smith", level: 2 }).waitFor();
    await alice.page.getByText("Live", { exact: true }).waitFor();
    await bob.page.getByText("Live", { exact: true }).waitFor();
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  const callView = (p) => p.page.getByRole("region", { name: "Call" });
  const incoming = (p) => p.page.getByRole("alertdialog");
  const status = (p) => callView(p).locator(".call-status");
  const callLog = (p, text) => p.page.locator("main .call-log", { hasText: text });

  it("rings, is accepted, connects, mutes and hangs up (audio)", async () => {
    await alice.page.getByRole("button", { name: "Start audio call" }).click();
    await callView(alice).waitFor();
    assert.equal(await status(alice).textContent(), "Calling…");
    const dialog = incoming(bob);
    await dialog.getByRole("heading", { name: "Alice Smith is calling" }).waitFor();
    assert.match(await dialog.textContent(), /Incoming audio call/);
    await screenshot(bob.page, "incoming-call");
    await dialog.getByRole("button", { name: "Accept" }).click();
    // WebRTC connects (fake microphone), both sides say so.
    await until("Alice in call", async () => /^In call/.test(await status(alice).textContent()), 20000);
    await until("Bob in call", async () => /^In call/.test(await status(bob).textContent()), 20000);
    const remoteTrack = (p) =>
      p.page.evaluate(() => {
        const audio = document.querySelector(".call-view .tile:not(.local) audio");
        const track = audio?.srcObject?.getAudioTracks()[0];
        return track ? track.readyState : "none";
      });
    assert.equal(await remoteTrack(alice), "live");
    assert.equal(await remoteTrack(bob), "live");
    // Mute is told to the other side.
    await callView(alice).getByRole("button", { name: "Mute microphone" }).click();
    await callView(bob).locator(".tile:not(.local) .badge", { hasText: "Muted" }).waitFor();
    assert.equal(await callView(alice).getByRole("button", { name: "Unmute microphone" }).getAttribute("aria-pressed"), "true");
    await screenshot(alice.page, "in-call");
    await callView(alice).getByRole("button", { name: "Unmute microphone" }).click();
    await until("unmuted at Bob", async () => (await callView(bob).locator(".tile:not(.local) .badge", { hasText: "Muted" }).count()) === 0);
    // Hang up: both views close, the call log shows in the history.
    await callView(bob).getByRole("button", { name: "Hang up" }).click();
    await until("Alice's view closed", async () => !(await callView(alice).isVisible()));
    await until("Bob's view closed", async () => !(await callView(bob).isVisible()));
    await callLog(alice, "You started an audio call").waitFor();
    assert.match(await callLog(alice, "started an audio call").first().textContent(), /You started an audio call · \d+:\d\d/);
    assert.match(await callLog(bob, "started an audio call").first().textContent(), /Alice Smith started an audio call · \d+:\d\d/);
  });

  it("turns the camera off and on in a video call", async () => {
    await alice.page.getByRole("button", { name: "Start video call" }).click();
    await incoming(bob).getByRole("button", { name: "Accept" }).click();
    await until("video call up", async () => /^In call/.test(await status(bob).textContent()), 20000);
    const remoteVideo = () =>
      bob.page.evaluate(() => document.querySelector(".call-view .tile:not(.local) video")?.srcObject?.getVideoTracks()[0]?.readyState);
    await until("Alice's camera at Bob", async () => (await remoteVideo()) === "live");
    await callView(alice).getByRole("button", { name: "Turn camera off" }).click();
    await callView(bob).locator(".tile:not(.local) .badge", { hasText: "Camera off" }).waitFor();
    await callView(alice).getByRole("button", { name: "Turn camera on" }).click();
    await until("camera back", async () => (await callView(bob).locator(".badge", { hasText: "Camera off" }).count()) === 0);
    await callView(alice).getByRole("button", { name: "Hang up" }).click();
    await until("Bob's view closed", async () => !(await callView(bob).isVisible()));
    await callLog(bob, "Alice Smith started a video call").waitFor();
  });

  it("is declined (video)", async () => {
    await alice.page.getByRole("button", { name: "Start video call" }).click();
    await callView(alice).waitFor();
    const dialog = incoming(bob);
    await dialog.getByRole("heading", { name: "Alice Smith is calling" }).waitFor();
    assert.match(await dialog.textContent(), /Incoming video call/);
    await dialog.getByRole("button", { name: "Decline" }).click();
    await until("Alice's view closed", async () => !(await callView(alice).isVisible()));
    await alice.page.getByText("Bob Jones declined the call").first().waitFor();
    await callLog(bob, "video call · declined").waitFor();
  });

  it("is missed, and the server's call_ended dismisses the ringing", async () => {
    await alice.page.getByRole("button", { name: "Start audio call" }).click();
    await callView(alice).waitFor();
    const dialog = incoming(bob);
    await dialog.getByRole("heading", { name: "Alice Smith is calling" }).waitFor();
    const rangAt = Date.now();
    // Nobody answers: the ring timeout job ends it for everyone.
    await until("Bob's dialog dismissed", async () => !(await dialog.isVisible()), (RING_SECONDS + 15) * 1000);
    assert.ok(Date.now() - rangAt > (RING_SECONDS - 1) * 1000, "dismissed by the timeout, not before");
    await until("Alice's view closed", async () => !(await callView(alice).isVisible()), 5000);
    await bob.page.getByText("Missed audio call from Alice Smith").first().waitFor();
    await callLog(alice, "No answer to your audio call").waitFor();
    assert.deepEqual([...alice.errors, ...bob.errors], [], "no page errors");
  });
});
