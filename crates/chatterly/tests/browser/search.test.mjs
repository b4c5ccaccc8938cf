// Searching messages in the web client, against the real server: results
// with conversation, author, time and the snippet (matches marked, nothing
// else ever markup), more results by the cursor, a bad query's error, and a
// result opening its conversation at the message, highlighted: one older
// than the first history page, and a thread reply in its thread.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { launch, person, screenshot, Server, signIn, until } from "./helpers.mjs";

describe("searching messages in the web client", () => {
  let server;
  let browser;
  let dana;
  let eli;
  let groupId;
  let me;
  const sent = new Map();

  before(async () => {
    server = await new Server(["--rate-limits", "off"]).start();
    browser = await launch();
    dana = await server.register("dana", "Dana Reyes");
    eli = await server.register("eli", "Eli Park");
    const group = await server.api("POST", "/api/v1/conversations", {
      token: dana.token,
      body: { name: "Launch plans", conversation_type: "group", member_ids: [eli.id] },
    });
    assert.equal(group.status, 201);
    groupId = group.body.data.id;
    const say = async (who, content, parent) => {
      const body = { content };
      if (parent) body.parent_message_id = parent;
      const response = await server.api("POST", `/api/v1/conversations/${groupId}/messages`, { token: who.token, body });
      assert.equal(response.status, 201, JSON.stringify(response.body));
      sent.set(content, response.body.data);
      return response.body.data;
    };
    await say(eli, "Kickoff notes are in the wiki");
    await say(dana, "Bring the <b>zeppelin</b> & the snacks");
    await say(eli, "The zeppelin launch window opens at dawn");
    const parent = await say(dana, "Who owns the checklist?");
    for (let n = 1; n <= 25; n++) await say(n % 2 ? dana : eli, `Bulletin number ${n}`);
    for (let n = 1; n <= 100; n++) await say(n % 2 ? eli : dana, `Filler ${String(n).padStart(3, "0")}`);
    await say(eli, "The quokka checklist is mine", parent.id);
    // What the test is about: the message to find is not in the first page.
    const newest = await server.api("GET", `/api/v1/conversations/${groupId}/messages`, { token: dana.token });
    assert.ok(newest.body.data.next_cursor !== null);
    assert.ok(!newest.body.data.messages.some((m) => m.content.includes("zeppelin")), "the zeppelin messages are older than the first page");
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  const box = () => me.page.getByRole("searchbox", { name: "Search messages" });
  const results = () => me.page.getByRole("region", { name: /^Results for/ });
  const hit = (text) => results().locator(".search-hit", { hasText: text });
  const search = async (q) => {
    await box().fill(q);
    await box().press("Enter");
    await results().getByRole("heading", { name: `Results for “${q}”` }).waitFor();
  };

  it("finds messages, showing where, who, when and the match", async () => {
    me = await person(browser, server);
    await signIn(me.page, dana);
    await me.page.getByRole("link", { name: /^Launch plans/ }).waitFor();
    await search("zeppelin");
    await until("two results", async () => (await results().locator(".search-hit").count()) === 2);
    const nav = me.page.getByRole("navigation", { name: "Conversations" });
    assert.equal(await nav.isVisible(), false, "the results take the list's place");
    assert.match(await results().getByRole("status").textContent(), /^2 messages found$/);

    const mine = hit("Bring the");
    assert.equal(await mine.locator(".where").textContent(), "Launch plans");
    assert.equal(await mine.locator(".hit-author").textContent(), "DRDana Reyes");
    const when = await mine.locator("time").getAttribute("datetime");
    assert.equal(when, sent.get("Bring the <b>zeppelin</b> & the snacks").created_at);
    // The snippet's escaped markup shows as text; only the match is marked.
    assert.equal(await mine.locator(".snippet").textContent(), "Bring the <b>zeppelin</b> & the snacks");
    assert.deepEqual(await mine.locator(".snippet mark").allTextContents(), ["zeppelin"]);
    assert.equal(await mine.locator(".snippet b").count(), 0);
    const theirs = hit("launch window");
    assert.equal(await theirs.locator(".hit-author").textContent(), "EPEli Park");
    assert.deepEqual(await theirs.locator(".snippet mark").allTextContents(), ["zeppelin"]);
  });

  it("opens a result older than the first page, scrolled to and highlighted", async () => {
    await hit("launch window").click();
    await me.page.getByRole("heading", { name: "Launch plans", level: 2 }).waitFor();
    const target = me.page.locator("main .msg", { has: me.page.getByText("The zeppelin launch window opens at dawn", { exact: true }) });
    await target.waitFor();
    await until("highlighted and focused", () =>
      target.evaluate((el) => el.classList.contains("found") && document.activeElement === el),
    );
    const inView = await target.evaluate((el) => {
      const frame = el.closest(".scroller").getBoundingClientRect();
      const box = el.getBoundingClientRect();
      return box.top >= frame.top && box.bottom <= frame.bottom;
    });
    assert.ok(inView, "the message is scrolled into view");
    // History was loaded back to it, with nothing missing in between.
    const shown = await me.page.locator("main .msg .text").allTextContents();
    const from = shown.indexOf("The zeppelin launch window opens at dawn");
    assert.ok(from >= 0);
    assert.deepEqual(shown.slice(from + 1, from + 4), ["Who owns the checklist?", "Bulletin number 1", "Bulletin number 2"]);
    assert.equal(shown[shown.length - 1], "Filler 100");
    // The results stay, for the next one.
    assert.ok(await results().isVisible());
    await until("highlight fades", () => target.evaluate((el) => !el.classList.contains("found")));
    await screenshot(me.page, "search");
  });

  it("opens a thread reply in its thread", async () => {
    await search("quokka");
    await hit("checklist is mine").click();
    const panel = me.page.locator("aside.panel");
    await panel.getByRole("heading", { name: "Thread" }).waitFor();
    const reply = panel.locator(".msg", { has: me.page.getByText("The quokka checklist is mine", { exact: true }) });
    await until("the reply highlighted", () => reply.evaluate((el) => el.classList.contains("found") && document.activeElement === el));
    await panel.getByText("Who owns the checklist?", { exact: true }).waitFor();
    await me.page.getByRole("button", { name: "Close thread" }).click();
  });

  it("loads more results by the cursor", async () => {
    await search("bulletin");
    await until("a first page", async () => (await results().locator(".search-hit").count()) === 20);
    assert.match(await results().getByRole("status").textContent(), /^20\+ messages found$/);
    await results().getByRole("button", { name: "More results" }).click();
    await until("all 25", async () => (await results().locator(".search-hit").count()) === 25);
    const ids = await results().locator(".search-hit").evaluateAll((els) => els.map((el) => el.dataset.id));
    assert.equal(new Set(ids).size, 25, "no result twice");
    const texts = await results().locator(".snippet").allTextContents();
    assert.deepEqual(
      texts.map((t) => Number(t.replace("Bulletin number ", ""))).sort((a, b) => a - b),
      Array.from({ length: 25 }, (_, i) => i + 1),
    );
    assert.equal(await results().getByRole("button", { name: "More results" }).isVisible(), false);
    assert.equal(await results().getByRole("status").textContent(), "25 messages found");
  });

  it("says what is wrong with a query, and when nothing matches", async () => {
    await search('"unclosed phrase');
    await until("the server's reason", async () => /without its closing/.test(await results().getByRole("status").textContent()));
    await search("xylophone");
    await until("nothing found", async () => (await results().getByRole("status").textContent()) === "No messages match “xylophone”.");
    assert.equal(await results().locator(".search-hit").count(), 0);
  });

  it("Escape closes the search and brings the list back", async () => {
    await box().focus();
    await me.page.keyboard.press("Escape");
    await me.page.getByRole("navigation", { name: "Conversations" }).getByRole("link", { name: /^Launch plans/ }).waitFor();
    assert.equal(await me.page.locator("section.search").isVisible(), false);
    assert.equal(await box().inputValue(), "");
    assert.deepEqual(me.errors, [], "no page errors");
  });
});
