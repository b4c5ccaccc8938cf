// Two people chat in the web client, in two browser contexts, against the
// real server: register, find each other, DM, live messages, typing,
// presence, edit, delete, reactions, threads, channels and groups with
// members, 120 messages of history, a server restart with catch-up, and
// signing out. The steps build on each other and run in order.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { launch, person, screenshot, Server, texts, until } from "./helpers.mjs";

describe("chatting in the web client", () => {
  let server;
  let browser;
  let alice;
  let bob;
  let dmId;
  const people = {
    alice: { email: "alice@example.test", password: "correct-horse-battery", username: "alice", name: "Alice Smith" },
    bob: { email: "bob@example.test", password: "correct-horse-battery", username: "bob", name: "Bob Jones" },
  };

  before(async () => {
    server = await new Server(["--rate-limits", "off"]).start();
    browser = await launch();
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  const main = (p) => p.page.locator("main");
  const message = (p, text) => main(p).locator(".msg", { has: p.page.getByText(text, { exact: true }) });
  const open = async (p, name) => {
    await p.page.getByRole("navigation", { name: "Conversations" }).getByRole("link", { name: new RegExp(`^${name}`) }).click();
    await p.page.getByRole("heading", { name, level: 2 }).waitFor();
  };
  const send = async (p, text) => {
    const box = main(p).locator(".composer textarea");
    await box.fill(text);
    await box.press("Enter");
    await message(p, text).waitFor();
  };

  async function register(p, who) {
    const { page } = p;
    await page.getByRole("button", { name: "New here? Create an account" }).click();
    await page.getByLabel("Email").fill(who.email);
    await page.getByLabel("Password").fill(who.password);
    await page.getByLabel("Username").fill(who.username);
    await page.getByLabel("Display name (optional)").fill(who.name);
    await page.getByRole("button", { name: "Create account" }).click();
    await page.getByRole("heading", { name: `Welcome, ${who.name}` }).waitFor();
    await page.getByText("Live", { exact: true }).waitFor();
  }

  it("registers two people", async () => {
    alice = await person(browser, server);
    bob = await person(browser, server);
    await alice.page.getByRole("heading", { name: "Sign in" }).waitFor();
    await screenshot(alice.page, "sign-in");
    await register(alice, people.alice);
    await register(bob, people.bob);
  });

  it("finds the other person and starts a DM", async () => {
    const { page } = alice;
    await page.getByRole("button", { name: "New conversation" }).click();
    const dialog = page.getByRole("dialog", { name: "New conversation" });
    await dialog.getByRole("searchbox", { name: "People" }).fill("bo");
    await dialog.getByRole("button", { name: "Add Bob Jones" }).click();
    await dialog.getByRole("listitem").filter({ hasText: "Bob Jones" }).first().waitFor();
    await screenshot(page, "new-conversation");
    await dialog.getByRole("button", { name: "Start" }).click();
    await page.getByRole("heading", { name: "Bob Jones", level: 2 }).waitFor();
    dmId = Number(new URL(page.url()).pathname.split("/").pop());
    assert.ok(dmId > 0, page.url());
    // Bob's list gets it live (new_conversation).
    await open(bob, "Alice Smith");
  });

  it("shows presence, on and off", async () => {
    const subtitle = main(alice).locator(".subtitle");
    await until("Bob online", async () => (await subtitle.textContent()) === "Online");
    await bob.page.goto("about:blank");
    await until("Bob offline", async () => (await subtitle.textContent()) === "Offline");
    // Back in the same tab: still signed in (the token survived in sessionStorage).
    await bob.page.goto(`${server.url}/c/${dmId}`);
    await bob.page.getByRole("heading", { name: "Alice Smith", level: 2 }).waitFor();
    await until("Bob online again", async () => (await subtitle.textContent()) === "Online");
    const stored = await bob.page.evaluate(() => [sessionStorage.getItem("chatterly.token") !== null, Object.keys(localStorage)]);
    assert.equal(stored[0], true, "the token is in sessionStorage");
    assert.ok(!stored[1].some((k) => k.includes("token")), `nothing token-like in localStorage: ${stored[1]}`);
  });

  it("sends and receives live, with typing shown and cleared", async () => {
    const box = main(alice).locator(".composer textarea");
    const bobTyping = main(bob).locator(".typing");
    await box.fill("Hi Bob, ready for the launch?");
    await until("typing shown", async () => (await bobTyping.textContent()) === "Alice Smith is typing…");
    await box.fill("");
    await until("typing cleared", async () => (await bobTyping.textContent()) === "");
    await box.fill("Hi Bob, ready for the launch?");
    await until("typing shown again", async () => (await bobTyping.textContent()) !== "");
    await box.press("Enter");
    await message(bob, "Hi Bob, ready for the launch?").waitFor();
    await until("typing cleared by the message", async () => (await bobTyping.textContent()) === "");
    await send(bob, "Almost. Five minutes.");
    await message(alice, "Almost. Five minutes.").waitFor();
    await send(alice, "Great, see you there");
    await message(bob, "Great, see you there").waitFor();
    // Each message once, in order, on both sides.
    const expected = ["Hi Bob, ready for the launch?", "Almost. Five minutes.", "Great, see you there"];
    assert.deepEqual(await texts(alice.page), expected);
    assert.deepEqual(await texts(bob.page), expected);
  });

  it("shows a send whose answer was lost once", async () => {
    // The server stores the message, but Alice's tab never hears back: it
    // retries under the same client_message_id (or the socket's copy comes
    // first), and either way the message is there once.
    let posts = 0;
    const messages = /\/api\/v1\/conversations\/\d+\/messages$/;
    await alice.page.route(messages, async (route) => {
      if (route.request().method() !== "POST") return route.fallback();
      posts += 1;
      if (posts > 1) return route.fallback();
      await route.fetch();
      return route.abort("connectionreset");
    });
    await send(alice, "Sent once, answered never");
    await message(bob, "Sent once, answered never").waitFor();
    await until("confirmed", async () => (await main(alice).locator(".msg.pending").count()) === 0);
    await alice.page.unroute(messages);
    assert.equal(await message(alice, "Sent once, answered never").count(), 1);
    assert.equal(await message(bob, "Sent once, answered never").count(), 1);
    const token = await alice.page.evaluate(() => sessionStorage.getItem("chatterly.token"));
    const page = await server.api("GET", `/api/v1/conversations/${dmId}/messages`, { token });
    assert.equal(page.body.data.messages.filter((m) => m.content === "Sent once, answered never").length, 1);
    // Tidy up for the steps below.
    const sent = message(alice, "Sent once, answered never");
    await sent.hover();
    await sent.getByRole("button", { name: "Delete message" }).click();
    await until("gone for Bob", async () => (await message(bob, "Sent once, answered never").count()) === 0);
  });

  it("edits and deletes own messages", async () => {
    const { page } = alice;
    const mine = message(alice, "Great, see you there");
    await mine.hover();
    await mine.getByRole("button", { name: "Edit message" }).click();
    const editor = main(alice).getByRole("textbox", { name: "Edit message" });
    await editor.fill("Great, see you in the war room");
    await editor.press("Enter");
    await message(alice, "Great, see you in the war room").locator(".edited").waitFor();
    await message(bob, "Great, see you in the war room").locator(".edited").waitFor();
    // Keyboard: ArrowUp in the empty box edits the last own message.
    await send(alice, "tpyo");
    await main(alice).locator(".composer textarea").press("ArrowUp");
    const keyboardEditor = main(alice).getByRole("textbox", { name: "Edit message" });
    await keyboardEditor.fill("typo fixed");
    await keyboardEditor.press("Enter");
    await message(bob, "typo fixed").waitFor();
    // Delete (the confirmation is accepted by the test's dialog handler).
    const doomed = message(alice, "typo fixed");
    await doomed.hover();
    await doomed.getByRole("button", { name: "Delete message" }).click();
    await until("deleted for Alice", async () => (await message(alice, "typo fixed").count()) === 0);
    await until("deleted for Bob", async () => (await message(bob, "typo fixed").count()) === 0);
    assert.equal(await page.getByRole("button", { name: "Edit message" }).count() > 0, true);
  });

  it("reacts, with counts and who reacted", async () => {
    const target = message(bob, "Hi Bob, ready for the launch?");
    await target.hover();
    await target.getByRole("button", { name: "Add reaction" }).click();
    await bob.page.getByRole("group", { name: "Pick a reaction" }).getByRole("button", { name: "React with 👍" }).click();
    const onAlice = message(alice, "Hi Bob, ready for the launch?").locator("button.reaction");
    await until("Bob's reaction at Alice", async () => /👍 1: Bob Jones/.test(await onAlice.getAttribute("aria-label")));
    assert.equal(await onAlice.getAttribute("aria-pressed"), "false");
    await onAlice.click();
    await until("two reactions", async () => /👍 2: Bob Jones, You/.test(await onAlice.getAttribute("aria-label")));
    assert.equal(await onAlice.getAttribute("aria-pressed"), "true");
    const onBob = message(bob, "Hi Bob, ready for the launch?").locator("button.reaction");
    await until("Alice's reaction at Bob", async () => /👍 2: You, Alice Smith/.test(await onBob.getAttribute("aria-label")));
    // Toggle off again.
    await onAlice.click();
    await until("back to one", async () => /👍 1: You\./.test(await onBob.getAttribute("aria-label")));
  });

  it("replies in a thread", async () => {
    const parent = message(bob, "Almost. Five minutes.");
    await parent.hover();
    await parent.getByRole("button", { name: "Reply in thread" }).click();
    const panel = bob.page.locator("aside.panel");
    await panel.getByRole("heading", { name: "Thread" }).waitFor();
    const reply = panel.getByRole("textbox", { name: "Reply in thread" });
    await reply.fill("Actually ten, the build is slow");
    await reply.press("Enter");
    await panel.getByText("Actually ten, the build is slow", { exact: true }).waitFor();
    // The reply lives in the thread, not in the main history; the parent counts it.
    const count = message(alice, "Almost. Five minutes.").getByRole("button", { name: /1 reply/ });
    await count.waitFor();
    assert.equal(await message(alice, "Actually ten, the build is slow").count(), 0);
    await count.click();
    const alicePanel = alice.page.locator("aside.panel");
    await alicePanel.getByText("Actually ten, the build is slow", { exact: true }).waitFor();
    await alicePanel.getByText("Almost. Five minutes.", { exact: true }).waitFor();
    await alice.page.keyboard.press("Escape");
    await until("thread closed", async () => !(await alicePanel.isVisible()));
  });

  it("creates a channel and a group, adds and removes members, leaves", async () => {
    const carol = await server.register("carol", "Carol Diaz");
    const { page } = alice;
    // A channel with Bob.
    await page.getByRole("button", { name: "New conversation" }).click();
    let dialog = page.getByRole("dialog", { name: "New conversation" });
    await dialog.getByRole("radio", { name: /Channel/ }).check();
    await dialog.getByRole("textbox", { name: "Name" }).fill("launch");
    await dialog.getByRole("searchbox", { name: "People" }).fill("bob");
    await dialog.getByRole("button", { name: "Add Bob Jones" }).click();
    await dialog.getByRole("button", { name: "Create" }).click();
    await page.getByRole("heading", { name: "launch", level: 2 }).waitFor();
    await open(bob, "launch");
    // Members: add Carol, remove Bob.
    await main(alice).getByRole("button", { name: "Members" }).click();
    const panel = page.locator("aside.panel");
    await panel.getByRole("heading", { name: "Members (2)" }).waitFor();
    await panel.getByRole("searchbox", { name: "Add people" }).fill("carol");
    await panel.getByRole("button", { name: "Add Carol Diaz" }).click();
    await panel.getByRole("heading", { name: "Members (3)" }).waitFor();
    await until("Bob sees three members", async () => /3 members/.test(await main(bob).locator(".subtitle").textContent()));
    await panel.getByRole("button", { name: "Remove Bob Jones" }).click();
    await panel.getByRole("heading", { name: "Members (2)" }).waitFor();
    // Bob's list loses it.
    const bobList = bob.page.getByRole("navigation", { name: "Conversations" });
    await until("channel gone for Bob", async () => (await bobList.getByRole("link", { name: /^launch/ }).count()) === 0);
    const members = await server.api("GET", "/api/v1/conversations", { token: carol.token });
    assert.ok(members.body.data.some((c) => c.name === "launch"), "Carol was added");
    await page.keyboard.press("Escape");

    // A group with Bob and Carol, which Bob then leaves.
    await page.getByRole("button", { name: "New conversation" }).click();
    dialog = page.getByRole("dialog", { name: "New conversation" });
    await dialog.getByRole("radio", { name: /Group/ }).check();
    await dialog.getByRole("textbox", { name: "Name" }).fill("Ops crew");
    const search = dialog.getByRole("searchbox", { name: "People" });
    await search.fill("bob");
    await dialog.getByRole("button", { name: "Add Bob Jones" }).click();
    await search.fill("carol");
    await dialog.getByRole("button", { name: "Add Carol Diaz" }).click();
    await dialog.getByRole("button", { name: "Create" }).click();
    await page.getByRole("heading", { name: "Ops crew", level: 2 }).waitFor();
    await until("3 members", async () => /3 members/.test(await main(alice).locator(".subtitle").textContent()));
    await open(bob, "Ops crew");
    await main(bob).getByRole("button", { name: "Members" }).click();
    await bob.page.locator("aside.panel").getByRole("button", { name: "Leave conversation" }).click();
    await until("group gone for Bob", async () => (await bobList.getByRole("link", { name: /^Ops crew/ }).count()) === 0);
    await until("Alice sees 2 members", async () => /2 members/.test(await main(alice).locator(".subtitle").textContent()));
  });

  it("scrolls back through 120 messages", async () => {
    const token = await alice.page.evaluate(() => sessionStorage.getItem("chatterly.token"));
    const group = await server.api("POST", "/api/v1/conversations", {
      token,
      body: { name: "History", conversation_type: "group", member_ids: [await userId(bob)] },
    });
    assert.equal(group.status, 201);
    const id = group.body.data.id;
    const expected = [];
    for (let n = 1; n <= 120; n++) {
      const content = `History ${String(n).padStart(3, "0")}`;
      expected.push(content);
      const sent = await server.api("POST", `/api/v1/conversations/${id}/messages`, { token, body: { content } });
      assert.equal(sent.status, 201);
    }
    await open(bob, "History");
    await message(bob, "History 120").waitFor();
    const scroller = main(bob).locator(".scroller");
    const older = main(bob).locator(".older");
    await until("the start of History", async () => {
      await scroller.evaluate((el) => (el.scrollTop = 0));
      return (await older.textContent()) === "This is the start of History.";
    }, 20000);
    assert.deepEqual(await texts(bob.page), expected, "every message once, in order");
    // The newest are still there at the bottom.
    await scroller.evaluate((el) => (el.scrollTop = el.scrollHeight));
    assert.ok(await message(bob, "History 120").isVisible());
  });

  async function userId(p) {
    return p.page.evaluate(async () => {
      const r = await fetch("/api/v1/users/me", { headers: { Authorization: `Bearer ${sessionStorage.getItem("chatterly.token")}` } });
      return (await r.json()).id;
    });
  }

  it("catches up after the server restarts mid-conversation", async () => {
    await open(alice, "Bob Jones");
    await open(bob, "Alice Smith");
    const earlier = await texts(bob.page);
    // The server goes away: both tabs notice (server_restart) and retry.
    await server.stop();
    const bobStatus = bob.page.locator(".connection");
    await until("Bob reconnecting", async () => (await bobStatus.textContent()) === "Reconnecting…");
    // Bob's tab cannot reconnect until we let it, so what happens meanwhile
    // reaches him only through catch-up (since_seq) and the refresh.
    await bob.context.setOffline(true);
    try {
      await server.start();
      await alice.page.getByText("Live", { exact: true }).waitFor({ timeout: 15000 });
      await afterRestart();
    } finally {
      await bob.context.setOffline(false);
    }
    await bob.page.getByText("Live", { exact: true }).waitFor({ timeout: 15000 });
    await message(bob, "Did you get these?").waitFor();
    await message(bob, "Great, see you in the war room at nine").waitFor();
    const expected = [...earlier, "Server is back", "Did you get these?"].map((t) =>
      t === "Great, see you in the war room" ? "Great, see you in the war room at nine" : t,
    );
    assert.deepEqual(await texts(bob.page), expected, "nothing lost or doubled");
    // And live again both ways.
    await send(bob, "Got them all");
    await message(alice, "Got them all").waitFor();
    assert.equal(await message(alice, "Got them all").count(), 1);
  });

  async function afterRestart() {
    await send(alice, "Server is back");
    await send(alice, "Did you get these?");
    // An edit while Bob is away: no catch-up replays it; the refresh does.
    const mine = message(alice, "Great, see you in the war room");
    await mine.hover();
    await mine.getByRole("button", { name: "Edit message" }).click();
    const editor = main(alice).getByRole("textbox", { name: "Edit message" });
    await editor.fill("Great, see you in the war room at nine");
    await editor.press("Enter");
    await message(alice, "Great, see you in the war room at nine").waitFor();
    assert.equal(await bob.page.locator(".connection").textContent(), "Reconnecting…");
  }

  it("works at 360 px, in dark mode, by keyboard", async () => {
    const narrow = await person(browser, server, { viewport: { width: 360, height: 740 }, colorScheme: "dark" });
    const { page } = narrow;
    await page.getByLabel("Email").fill(people.bob.email);
    await page.getByLabel("Password").fill(people.bob.password);
    await page.getByLabel("Password").press("Enter");
    await page.getByText("Live", { exact: true }).waitFor();
    await page.getByRole("link", { name: /^History/ }).waitFor();
    await screenshot(page, "mobile-list-dark");
    // Keyboard only: Tab to the conversation, Enter opens it.
    const link = page.getByRole("link", { name: /^Alice Smith/ });
    await link.focus();
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Alice Smith", level: 2 }).waitFor();
    assert.equal(await page.locator(".sidebar").isVisible(), false, "one screen at a time");
    await page.keyboard.type("Typed on a phone");
    await page.keyboard.press("Enter");
    await message(alice, "Typed on a phone").waitFor();
    // Alice has it open: the tick turns to read (and the picture holds still).
    const tick = main(narrow).locator(".msg", { has: page.getByText("Typed on a phone", { exact: true }) }).locator(".tick");
    await until("read by Alice", async () => (await tick.getAttribute("aria-label")) === "Read");
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
    assert.ok(overflow <= 0, `no sideways scrolling at 360 px (${overflow} px too wide)`);
    await screenshot(page, "mobile-conversation-dark");
    await page.getByRole("button", { name: "Back to conversations" }).click();
    await page.getByRole("navigation", { name: "Conversations" }).waitFor();
    // Every control has a name.
    const unnamed = await page.evaluate(() =>
      [...document.querySelectorAll("button, a[href], input, textarea")]
        .filter((el) => el.offsetParent !== null)
        .filter((el) => !(el.getAttribute("aria-label") || el.textContent.trim() || el.labels?.length || el.getAttribute("title")))
        .map((el) => el.outerHTML.slice(0, 80)),
    );
    assert.deepEqual(unnamed, []);
    await narrow.context.close();
    assert.deepEqual(narrow.errors, []);
  });

  it("takes desktop screenshots, light and dark", async () => {
    await open(alice, "Bob Jones");
    await message(alice, "Almost. Five minutes.").getByRole("button", { name: /1 reply/ }).click();
    await alice.page.locator("aside.panel").getByText("Actually ten, the build is slow", { exact: true }).waitFor();
    await screenshot(alice.page, "conversation");
    await alice.page.emulateMedia({ colorScheme: "dark" });
    await screenshot(alice.page, "conversation-dark");
    await alice.page.emulateMedia({ colorScheme: "light" });
    await alice.page.getByRole("button", { name: "Close thread" }).click();
  });

  it("announces new messages in an aria-live region", async () => {
    await open(alice, "Bob Jones");
    await send(bob, "Are you there?");
    await until("announced", async () => /Bob Jones: Are you there\?/.test(await alice.page.locator("#live").textContent()));
    assert.equal(await alice.page.locator("#live").getAttribute("aria-live"), "polite");
  });

  it("signs out, which revokes the token", async () => {
    const token = await bob.page.evaluate(() => sessionStorage.getItem("chatterly.token"));
    assert.equal((await server.api("GET", "/api/v1/users/me", { token })).status, 200);
    await bob.page.getByRole("button", { name: "Sign out" }).click();
    await bob.page.getByRole("heading", { name: "Sign in" }).waitFor();
    assert.equal(await bob.page.evaluate(() => sessionStorage.getItem("chatterly.token")), null);
    await until("token revoked", async () => (await server.api("GET", "/api/v1/users/me", { token })).status === 401);
    // A reload stays signed out.
    await bob.page.reload();
    await bob.page.getByRole("heading", { name: "Sign in" }).waitFor();
    assert.deepEqual([...alice.errors, ...bob.errors], [], "no page errors");
  });
});
