// Read state in the web client, two people (and a second tab of one of them)
// against the real server: unread badges from the server kept live, marking
// read when a conversation is seen (not while the tab is hidden), the "New
// messages" divider, a badge cleared in one tab clearing in the other,
// delivery and read ticks in a DM, a highlighted mention with its badge, and
// the list of mentions. The steps build on each other and run in order.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { launch, person, screenshot, Server, signIn, until } from "./helpers.mjs";

describe("read state in the web client", () => {
  let server;
  let browser;
  let users;
  let alice;
  let bob;
  let bobPhone;

  before(async () => {
    server = await new Server(["--rate-limits", "off"]).start();
    browser = await launch();
    const a = await server.register("alice", "Alice Smith");
    const b = await server.register("bob", "Bob Jones");
    const c = await server.register("carol", "Carol Diaz");
    const create = async (user, body) => {
      const r = await server.api("POST", "/api/v1/conversations", { token: user.token, body });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      return r.body.data.id;
    };
    const dm = await create(a, { conversation_type: "direct", member_ids: [b.id] });
    const team = await create(a, { conversation_type: "group", name: "Team", member_ids: [b.id, c.id] });
    users = { a, b, c, dm, team };
    // Bob has read what was said in Team before today.
    await post(a, team, "Welcome to the team");
    assert.equal((await server.api("PUT", `/api/v1/conversations/${team}/read`, { token: b.token, body: {} })).status, 200);
    alice = await person(browser, server);
    bob = await person(browser, server);
    await signIn(alice.page, a);
    await signIn(bob.page, b);
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  async function post(user, id, content) {
    const r = await server.api("POST", `/api/v1/conversations/${id}/messages`, { token: user.token, body: { content } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.data;
  }

  async function serverRow(user, id) {
    const r = await server.api("GET", "/api/v1/conversations", { token: user.token });
    return r.body.data.find((c) => c.id === id);
  }

  const main = (p) => p.page.locator("main");
  const message = (p, text) => main(p).locator(".msg", { has: p.page.getByText(text, { exact: true }) });
  const link = (p, name) => p.page.getByRole("navigation", { name: "Conversations" }).getByRole("link", { name: new RegExp(`^${name}`) });
  const badge = async (p, name) => {
    const counts = link(p, name).locator(".unread-count");
    return (await counts.count()) ? counts.textContent() : "";
  };
  const open = async (p, name) => {
    await link(p, name).click();
    await p.page.getByRole("heading", { name, level: 2 }).waitFor();
  };
  const send = async (p, text) => {
    const box = main(p).locator(".composer textarea");
    await box.fill(text);
    await box.press("Enter");
    await message(p, text).waitFor();
  };

  it("shows the server's unread count, live, and clears it when opened", async () => {
    await open(bob, "Alice Smith");
    await open(alice, "Team");
    await send(alice, "Are you in today?");
    await send(alice, "Standup in five");
    await until("Bob's badge on Team", async () => (await badge(bob, "Team")) === "2");
    assert.match(await link(bob, "Team").textContent(), /2 unread/, "the count is in the link's name");
    assert.equal(await bob.page.title(), "(2) Chatterly");
    // A reload asks the server, which has the same count.
    await bob.page.reload();
    await bob.page.getByRole("heading", { name: "Alice Smith", level: 2 }).waitFor();
    await until("the badge after a reload", async () => (await badge(bob, "Team")) === "2");
    assert.equal((await serverRow(users.b, users.team)).unread_count, 2);

    await open(bob, "Team");
    await until("badge cleared", async () => (await badge(bob, "Team")) === "");
    await until("read on the server", async () => (await serverRow(users.b, users.team)).unread_count === 0);
    assert.equal(await bob.page.title(), "Chatterly");
  });

  it("puts the New messages divider before the first unread message", async () => {
    const divider = main(bob).getByRole("separator", { name: "New messages" });
    await divider.waitFor();
    assert.equal(await divider.count(), 1);
    // It sits in the first unread message's row, after the one read before.
    const row = main(bob).locator(".msg", { has: bob.page.getByRole("separator", { name: "New messages" }) });
    assert.match(await row.locator(".text").textContent(), /^Are you in today\?$/);
    const order = await main(bob).locator(".msg .text, .msg .new-divider").allTextContents();
    assert.deepEqual(order, ["Welcome to the team", "New messages", "Are you in today?", "Standup in five"]);
    // It stays while the conversation is open; reopened with nothing unread, it is gone.
    await open(bob, "Alice Smith");
    await open(bob, "Team");
    await message(bob, "Standup in five").waitFor();
    assert.equal(await main(bob).getByRole("separator", { name: "New messages" }).count(), 0);
  });

  it("does not mark read while the tab is hidden", async () => {
    // Bob switches to another tab with Team open.
    const setHidden = (page, hidden) =>
      page.evaluate((value) => {
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (value ? "hidden" : "visible") });
        Object.defineProperty(document, "hidden", { configurable: true, get: () => value });
        document.dispatchEvent(new Event("visibilitychange"));
      }, hidden);
    await setHidden(bob.page, true);
    await send(alice, "Anyone?");
    await message(bob, "Anyone?").waitFor({ state: "attached" });
    await until("badge on the open conversation", async () => (await badge(bob, "Team")) === "1");
    assert.equal(await bob.page.title(), "(1) Chatterly");
    await new Promise((resolve) => setTimeout(resolve, 800));
    assert.equal((await serverRow(users.b, users.team)).unread_count, 1, "not marked while hidden");
    // Back: it is read, with the divider above what came meanwhile.
    await setHidden(bob.page, false);
    await until("read once seen", async () => (await serverRow(users.b, users.team)).unread_count === 0);
    await until("badge cleared", async () => (await badge(bob, "Team")) === "");
    const row = main(bob).locator(".msg", { has: bob.page.getByRole("separator", { name: "New messages" }) });
    assert.equal(await row.locator(".text").textContent(), "Anyone?");
  });

  it("clears a badge in Bob's other tab when he reads in one", async () => {
    // A second tab has its own session: Bob signs in there too.
    bobPhone = await person(browser, server, { viewport: { width: 360, height: 740 } });
    await signIn(bobPhone.page, users.b);
    await open(bob, "Alice Smith");
    await send(alice, "Pizza at noon?");
    await until("badge in the first tab", async () => (await badge(bob, "Team")) === "1");
    await until("badge in the second tab", async () => (await badge(bobPhone, "Team")) === "1");
    await open(bobPhone, "Team");
    await message(bobPhone, "Pizza at noon?").waitFor();
    await until("read on the server", async () => (await serverRow(users.b, users.team)).unread_count === 0);
    await bobPhone.page.getByRole("button", { name: "Back to conversations" }).click();
    await until("cleared in the tab that read", async () => (await badge(bobPhone, "Team")) === "");
    await until("cleared in the other tab (conversation_read)", async () => (await badge(bob, "Team")) === "");
    assert.equal(await bob.page.title(), "Chatterly");
    await bobPhone.context.close();
    assert.deepEqual(bobPhone.errors, []);
  });

  it("shows delivery and read ticks in a DM", async () => {
    await open(bob, "Team");
    await open(alice, "Bob Jones");
    const tick = (text) => message(alice, text).locator(".tick");
    // Bob's tab gets the message (Team is open): delivered, not read.
    await send(alice, "Did you see the doc?");
    await until("delivered", async () => (await tick("Did you see the doc?").getAttribute("aria-label")) === "Delivered");
    assert.equal(await tick("Did you see the doc?").textContent(), "✓✓");
    assert.equal(await tick("Did you see the doc?").getAttribute("title"), "Delivered");
    // Bob has no device open: sent only.
    await bob.page.goto("about:blank");
    await send(alice, "Call me when you are back");
    await until("sent", async () => (await tick("Call me when you are back").getAttribute("aria-label")) === "Sent");
    assert.equal(await tick("Call me when you are back").textContent(), "✓");
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(await tick("Call me when you are back").getAttribute("aria-label"), "Sent", "still only sent");
    // Bob's tab comes back (still signed in) to the list: delivered.
    await bob.page.goto(server.url + "/");
    await until("delivered on return", async () => (await tick("Call me when you are back").getAttribute("aria-label")) === "Delivered");
    await until("Bob's badge on the DM", async () => (await badge(bob, "Alice Smith")) === "2");
    // Bob opens it: read, live, in colour.
    await open(bob, "Alice Smith");
    await until("read", async () => (await tick("Call me when you are back").getAttribute("aria-label")) === "Read");
    assert.equal(await tick("Did you see the doc?").getAttribute("aria-label"), "Read");
    assert.match(await tick("Call me when you are back").getAttribute("class"), /\bread\b/);
    // Ticks are on one's own messages only.
    assert.equal(await main(bob).locator(".tick").count(), 0);
    // A reload reads GET …/receipts: the same.
    await alice.page.reload();
    await until("read after a reload", async () => (await tick("Call me when you are back").getAttribute("aria-label")) === "Read");
    await screenshot(alice.page, "read-receipts");
  });

  it("highlights a message that mentions Bob, and his badge shows the mention", async () => {
    await open(alice, "Team");
    await send(alice, "@bob can you review the release notes? cc @nobody");
    await until("mention badge", async () => (await link(bob, "Team").locator(".mention-count").count()) === 1);
    assert.equal(await link(bob, "Team").locator(".mention-count").textContent(), "@1");
    assert.equal(await badge(bob, "Team"), "1");
    assert.match(await link(bob, "Team").textContent(), /1 unread, 1 mention/);
    // Alice's own message names Bob but is not highlighted for her.
    const hers = message(alice, "@bob can you review the release notes? cc @nobody");
    assert.equal(await hers.locator(".mention").textContent(), "@bob");
    assert.ok(!(await hers.getAttribute("class")).includes("mentioned"));

    // Carol writes in a conversation Bob does not have open, for the picture.
    const design = await server.api("POST", "/api/v1/conversations", {
      token: users.c.token,
      body: { conversation_type: "group", name: "Design", member_ids: [users.b.id] },
    });
    assert.equal(design.status, 201);
    await link(bob, "Design").waitFor();
    for (const text of ["New mockups are up", "@bob does the dark theme work for you?"]) await post(users.c, design.body.data.id, text);
    await until("Design's badges", async () => (await badge(bob, "Design")) === "2" && (await link(bob, "Design").locator(".mention-count").count()) === 1);

    await open(bob, "Team");
    const mention = message(bob, "@bob can you review the release notes? cc @nobody");
    await mention.waitFor();
    assert.ok((await mention.getAttribute("class")).includes("mentioned"), "highlighted for Bob");
    assert.equal(await mention.locator(".mention.to-me").textContent(), "@bob");
    assert.equal(await mention.locator(".mention").count(), 1, "@nobody is plain text");
    await mention.getByText("mentions you").waitFor();
    await until("mention badge cleared", async () => (await link(bob, "Team").locator(".mention-count").count()) === 0);
    // The mark goes out debounced: wait for the server to have it.
    await until("server mention count", async () => (await serverRow(users.b, users.team)).mention_count === 0);
    await main(bob).getByRole("separator", { name: "New messages" }).waitFor();
    await screenshot(bob.page, "unread-and-mentions");
  });

  it("lists the messages that mention Bob, and opens one", async () => {
    await bob.page.getByRole("button", { name: "Mentions" }).click();
    const dialog = bob.page.getByRole("dialog", { name: "Mentions" });
    const items = dialog.getByRole("link");
    await until("two mentions", async () => (await items.count()) === 2);
    assert.deepEqual(await dialog.locator(".mention-item .text").allTextContents(), [
      "@bob does the dark theme work for you?",
      "@bob can you review the release notes? cc @nobody",
    ]);
    assert.match(await items.first().textContent(), /Carol Diaz in Design/);
    await items.first().click();
    await bob.page.getByRole("heading", { name: "Design", level: 2 }).waitFor();
    assert.equal(await dialog.count(), 0);
    await until("Design read", async () => (await badge(bob, "Design")) === "" && (await link(bob, "Design").locator(".mention-count").count()) === 0);
    assert.deepEqual([...alice.errors, ...bob.errors], [], "no page errors");
  });
});
