// Shared pieces of the browser suite: the real server (started, stopped and
// restarted here), Debian's Chromium through playwright-core, and users.
//
// Environment (set by tests/browser.rs):
//   CHATTERLY_BIN         the chatterly binary to run (required)
//   CHATTERLY_CHROMIUM    the Chromium executable (default /usr/bin/chromium)
//   CHATTERLY_SCREENSHOTS where screenshots go (default: none are taken)

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const WAIT_MS = 10000;

const BIN = process.env.CHATTERLY_BIN;
const CHROMIUM = process.env.CHATTERLY_CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.CHATTERLY_SCREENSHOTS || "";

if (!BIN || !existsSync(BIN)) {
  throw new Error(`CHATTERLY_BIN must name the chatterly binary (got ${BIN}); run through cargo test -p chatterly --test browser`);
}
if (!existsSync(CHROMIUM)) {
  throw new Error(`Chromium is not at ${CHROMIUM}: apt-get install chromium (scripts/test does it)`);
}

/** A loopback port nobody listens on right now. */
async function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** The real server on a free loopback port with its own data directory. */
export class Server {
  constructor(flags = []) {
    this.flags = flags;
    this.dataDir = mkdtempSync(join(tmpdir(), "chatterly-browser-"));
    this.child = null;
    this.log = [];
  }

  async start() {
    if (!this.port) this.port = await freePort();
    const args = ["serve", "--listen", `127.0.0.1:${this.port}`, "--data-dir", this.dataDir, "--log-format", "json", ...this.flags];
    const env = { PATH: process.env.PATH, RUST_LOG: "warn", RUST_BACKTRACE: "1" };
    const child = spawn(BIN, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    this.child = child;
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    this.exited = exited;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the server did not start within ${WAIT_MS} ms:\n${this.log.join("")}`)), WAIT_MS);
      const onData = (chunk) => {
        this.log.push(String(chunk));
        if (String(chunk).includes("Chatterly is listening on")) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", (chunk) => this.log.push(String(chunk)));
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`the server exited (${code ?? signal}) while starting:\n${this.log.join("")}`));
      });
    });
    return this;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Graceful stop (SIGTERM: sockets get `disconnect` `server_restart`). */
  async stop() {
    if (!this.child) return;
    const child = this.child;
    this.child = null;
    child.kill("SIGTERM");
    const killer = setTimeout(() => child.kill("SIGKILL"), WAIT_MS);
    await this.exited;
    clearTimeout(killer);
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  async close() {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** A REST call, for setting up what the test is not about. */
  async api(method, path, { token, body } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(this.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null, headers: response.headers };
  }

  /** Registers over REST; returns {id, token, email, password, name}. */
  async register(username, displayName) {
    const user = { email: `${username}@example.test`, password: "correct-horse-battery", username, display_name: displayName };
    const response = await this.api("POST", "/auth/register", { body: { user } });
    if (response.status !== 201) throw new Error(`register ${username}: ${response.status} ${JSON.stringify(response.body)}`);
    const token = response.headers.get("authorization").slice("Bearer ".length);
    return { ...user, id: response.body.user.id, token, name: displayName };
  }
}

const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** Debian's Chromium, headless. `media` adds fake camera and microphone. */
export async function launch({ media = false } = {}) {
  const args = [...FLAGS];
  if (media) {
    args.push(
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
      // The suite runs where loopback may be the only interface (see
      // tests/browser.rs); WebRTC ignores loopback unless told.
      "--allow-loopback-in-peer-connection",
      "--autoplay-policy=no-user-gesture-required",
    );
  }
  return chromium.launch({ executablePath: CHROMIUM, args, headless: true });
}

/**
 * A browser context as one person, on `server`. Page errors and failed
 * assertions of the app (console errors) are collected in `errors`.
 */
export async function person(browser, server, options = {}) {
  const context = await browser.newContext({
    viewport: options.viewport || { width: 1280, height: 800 },
    colorScheme: options.colorScheme || "light",
    locale: "en-US",
    timezoneId: "UTC",
    permissions: options.media ? ["microphone", "camera"] : [],
    deviceScaleFactor: 1,
  });
  context.setDefaultTimeout(WAIT_MS);
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (error) => errors.push(`page error: ${error.message}`));
  page.on("dialog", (dialog) => dialog.accept());
  page.on("console", (message) => {
    if (message.type() === "error" && !/Failed to load resource|WebSocket connection to/.test(message.text())) {
      errors.push(`console: ${message.text()}`);
    }
  });
  await page.goto(server.url + "/");
  return { context, page, errors };
}

/** Signs in through the form. */
export async function signIn(page, user) {
  await page.getByLabel("Email").fill(user.email);
  await page.getByLabel("Password").fill(user.password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByText("Live", { exact: true }).waitFor();
}

/** Waits until `fn()` (run in the test) is truthy. */
export async function until(what, fn, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await fn();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

/** A PNG of the page into the screenshots directory, if one is set. */
export async function screenshot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  // The same picture on every run, so the committed files only change when
  // the screens do: no hover, no caret, no toasts, and the clock at 9:41.
  await page.mouse.move(0, 0);
  // (Done through the DOM: the page's CSP refuses injected styles.)
  await page.evaluate(() => {
    for (const time of document.querySelectorAll("time")) time.textContent = "9:41 AM";
    document.getElementById("toasts").hidden = true;
    // The call's clock ticks every second; hold it still.
    const status = document.querySelector(".call-status");
    const hold = () => {
      if (/^In call/.test(status.textContent) && status.textContent !== "In call · 0:42") status.textContent = "In call · 0:42";
    };
    if (status) {
      hold();
      window.__holdClock = new MutationObserver(hold);
      window.__holdClock.observe(status, { childList: true, characterData: true, subtree: true });
    }
  });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), caret: "hide", animations: "disabled" });
  await page.evaluate(() => {
    document.getElementById("toasts").hidden = false;
    window.__holdClock?.disconnect();
  });
}

/** The message texts of the open conversation, in order. */
export async function texts(page, scope = "main") {
  return page.locator(`${scope} .msg .text`).allTextContents();
}
