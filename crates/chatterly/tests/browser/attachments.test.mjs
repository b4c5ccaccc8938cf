// Attachments in the web client, two people against the real server: an
// image attached by the button uploads with a progress bar and reaches the
// other side as a preview (and a lightbox); a file dropped on the
// conversation becomes a card with a working download link; a pasted file
// waits in the box and can be removed.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { deflateSync } from "node:zlib";
import { launch, person, screenshot, Server, signIn, until } from "./helpers.mjs";

/** CRC-32 (PNG chunks), table-less: the test needs a few kilobytes of it. */
function crc32(bytes) {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "ascii");
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** A real PNG the server can decode: `width`×`height` RGB, an evening sky
 *  with noise in the low bits (so it compresses little, and uploading it
 *  takes a while when throttled). */
function noisePng(width, height) {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // truecolour
  // A fixed xorshift stream: the same picture (and screenshot) every run.
  let seed = 0x2545f491;
  const noise = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed & 0x0f;
  };
  const rows = Buffer.alloc((width * 3 + 1) * height);
  const top = [40, 70, 160];
  const bottom = [250, 150, 70];
  for (let y = 0; y < height; y++) {
    const row = y * (width * 3 + 1);
    rows[row] = 0; // no filter
    const t = y / (height - 1);
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        const base = Math.round(top[c] + (bottom[c] - top[c]) * t) & 0xf0;
        rows[row + 1 + x * 3 + c] = base | noise();
      }
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

describe("attachments in the web client", () => {
  let server;
  let browser;
  let ana;
  let ben;
  let anaUser;
  let benUser;
  const photo = noisePng(480, 360);
  assert.ok(photo.length > 200 * 1024, `the picture is large enough to watch (${photo.length} bytes)`);
  const notes = "Launch checklist\n1. fuel\n2. weather\n";

  before(async () => {
    server = await new Server(["--rate-limits", "off"]).start();
    browser = await launch();
    anaUser = await server.register("ana", "Ana Silva");
    benUser = await server.register("ben", "Ben Okafor");
    const dm = await server.api("POST", "/api/v1/conversations", {
      token: anaUser.token,
      body: { conversation_type: "direct", member_ids: [benUser.id] },
    });
    assert.equal(dm.status, 201, JSON.stringify(dm.body));
    ana = await person(browser, server);
    ben = await person(browser, server);
    await signIn(ana.page, anaUser);
    await signIn(ben.page, benUser);
    for (const [p, other] of [[ana, "Ben Okafor"], [ben, "Ana Silva"]]) {
      await p.page.getByRole("link", { name: new RegExp(`^${other}`) }).click();
      await p.page.getByRole("heading", { name: other, level: 2 }).waitFor();
    }
  });

  after(async () => {
    await browser?.close();
    await server?.close();
  });

  const main = (p) => p.page.locator("main");
  const message = (p, text) => main(p).locator(".msg", { has: p.page.getByText(text, { exact: true }) });
  const tray = (p) => main(p).getByRole("list", { name: "Attachments to send" });

  it("uploads an image with a progress bar; the other side sees its preview", async () => {
    const { page } = ana;
    // Slow the upload down so the progress bar has time to be seen moving.
    const cdp = await ana.context.newCDPSession(page);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", {
      offline: false,
      latency: 0,
      downloadThroughput: -1,
      uploadThroughput: 128 * 1024,
    });
    const [chooser] = await Promise.all([page.waitForEvent("filechooser"), main(ana).getByRole("button", { name: "Attach files" }).click()]);
    assert.ok(chooser.isMultiple());
    await chooser.setFiles({ name: "roof.png", mimeType: "image/png", buffer: photo });
    const bar = tray(ana).getByRole("progressbar", { name: "Uploading roof.png" });
    await bar.waitFor();
    const partway = await until("progress between the ends", async () => {
      const value = Number(await bar.getAttribute("value").catch(() => null));
      return value > 0 && value < 100 ? value : null;
    });
    assert.ok(partway > 0 && partway < 100, `progress ${partway}`);
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    // Uploaded: the bar gives way to the size and the server's thumbnail.
    const chip = tray(ana).getByRole("listitem").filter({ hasText: "roof.png" });
    await until("uploaded", async () => (await chip.getAttribute("class")).includes("ready"));
    assert.equal(await bar.count(), 0);
    await until("thumbnail in the box", () => chip.locator("img").evaluate((img) => img.complete && img.naturalWidth > 0));

    const box = main(ana).locator(".composer textarea");
    await box.fill("Sunset from the roof");
    await box.press("Enter");
    await until("the box is empty again", async () => (await tray(ana).isHidden()) && (await box.inputValue()) === "");

    // Ben gets it live, as a preview loaded with his own access token.
    const received = message(ben, "Sunset from the roof");
    const preview = received.getByRole("button", { name: "View roof.png" });
    await preview.waitFor();
    const img = preview.locator("img");
    assert.match(await img.getAttribute("src"), /^\/api\/v1\/attachments\/\d+\/thumbnail\?access_token=/);
    await until("Ben's preview loaded", () => img.evaluate((el) => el.complete && el.naturalWidth > 0));
    assert.equal(await img.getAttribute("alt"), "roof.png");
    await until("Ana's copy confirmed", async () => (await main(ana).locator(".msg.pending").count()) === 0);
    await message(ana, "Sunset from the roof").getByRole("button", { name: "View roof.png" }).waitFor();

    // A click shows the whole image.
    await preview.click();
    const lightbox = ben.page.getByRole("dialog", { name: "roof.png" });
    await lightbox.waitFor();
    const full = lightbox.locator("img");
    await until("the whole image", () => full.evaluate((el) => el.complete && el.naturalWidth === 480));
    const tab = lightbox.getByRole("link", { name: "Open in new tab" });
    assert.match(await tab.getAttribute("href"), /^\/api\/v1\/attachments\/\d+\/content\?access_token=/);
    assert.equal(await tab.getAttribute("target"), "_blank");
    await ben.page.keyboard.press("Escape");
    await until("lightbox closed", async () => (await lightbox.count()) === 0);
  });

  it("a file dropped on the conversation becomes a card with a download link", async () => {
    const { page } = ana;
    const dataTransfer = await page.evaluateHandle((text) => {
      const dt = new DataTransfer();
      dt.items.add(new File([text], "notes.txt", { type: "text/plain" }));
      return dt;
    }, notes);
    const history = main(ana).locator(".history");
    await history.dispatchEvent("dragover", { dataTransfer });
    assert.match(await history.getAttribute("class"), /dropping/);
    await history.dispatchEvent("drop", { dataTransfer });
    assert.doesNotMatch(await history.getAttribute("class"), /dropping/);
    const chip = tray(ana).getByRole("listitem").filter({ hasText: "notes.txt" });
    await until("uploaded", async () => (await chip.getAttribute("class")).includes("ready"));
    // No text needed with a file.
    await main(ana).locator(".composer textarea").press("Enter");

    const card = main(ben).locator(".file-card", { hasText: "notes.txt" });
    await card.waitFor();
    assert.equal(await card.locator(".hint").textContent(), `${Buffer.byteLength(notes)} bytes`);
    const link = card.getByRole("link", { name: "Download notes.txt" });
    assert.equal(await link.getAttribute("download"), "notes.txt");
    const href = await link.getAttribute("href");
    assert.match(href, /^\/api\/v1\/attachments\/\d+\/content\?access_token=/);
    // The link works on its own (no Authorization header), as Ben.
    const response = await fetch(server.url + href);
    assert.equal(response.status, 200);
    assert.equal(await response.text(), notes);
    // And the browser downloads it under its name.
    const [download] = await Promise.all([ben.page.waitForEvent("download"), link.click()]);
    assert.equal(download.suggestedFilename(), "notes.txt");
    await ben.page.evaluate(() => document.activeElement?.blur());
    await screenshot(ben.page, "attachments");
  });

  it("a pasted file waits in the box and can be removed", async () => {
    const box = main(ana).locator(".composer textarea");
    await box.focus();
    await box.evaluate((el) => {
      const dt = new DataTransfer();
      dt.items.add(new File(["a,b\n1,2\n"], "table.csv", { type: "text/csv" }));
      el.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
    });
    const chip = tray(ana).getByRole("listitem").filter({ hasText: "table.csv" });
    await until("uploaded", async () => (await chip.getAttribute("class")).includes("ready"));
    assert.equal(await box.inputValue(), "", "the file is not pasted as text");
    await chip.getByRole("button", { name: "Remove table.csv" }).click();
    await until("gone", async () => await tray(ana).isHidden());
    // Nothing to send now: Enter sends nothing.
    const before = await main(ana).locator(".msg").count();
    await box.press("Enter");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await main(ana).locator(".msg").count(), before);
    assert.deepEqual([...ana.errors, ...ben.errors], [], "no page errors");
  });
});
