// Boots the client: restores the session, lays out the screen, opens the
// socket, and routes (`/` is the list, `/c/{id}` a conversation).

import * as actions from "./actions.js";
import * as api from "./api.js";
import { startCable, stopCable } from "./cable.js";
import * as calls from "./calls.js";
import { h, replace, toast } from "./dom.js";
import { emit, on, reset, sinceSeq, state } from "./state.js";
import { renderAuth } from "./views/auth.js";
import { renderCalls } from "./views/call.js";
import { renderConversation } from "./views/conversation.js";
import { mentionsDialog, newConversationDialog } from "./views/dialogs.js";
import { renderMembers } from "./views/members.js";
import { renderSidebar } from "./views/sidebar.js";
import { renderThread } from "./views/thread.js";

const root = document.getElementById("app");
const LIST_REFRESH_MS = 60000;

// ---- theme: follows the system unless chosen (kept in localStorage; no secrets there) ----

const THEMES = ["auto", "dark", "light"];
const themeKey = "chatterly.theme";

function applyTheme() {
  const theme = localStorage.getItem(themeKey) || "auto";
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
}

function cycleTheme() {
  const now = localStorage.getItem(themeKey) || "auto";
  localStorage.setItem(themeKey, THEMES[(THEMES.indexOf(now) + 1) % THEMES.length]);
  applyTheme();
}

const themeLabel = () => localStorage.getItem(themeKey) || "auto";

// ---- session ----

let teardown = [];
let refreshTimer = null;

function showAuth(notice) {
  document.title = "Chatterly";
  renderAuth(
    root,
    (user) => {
      state.me = user;
      enter();
    },
    notice,
  );
}

async function signOut() {
  leave();
  await api.logout().catch(() => {});
  showAuth("You are signed out.");
}

/** The session ended on the server (401): back to the sign-in screen. */
function sessionEnded() {
  if (!state.me) return;
  leave();
  api.forget();
  showAuth("Your session has ended. Please sign in again.");
}

function leave() {
  calls.reset();
  stopCable();
  clearInterval(refreshTimer);
  for (const stop of teardown) stop();
  teardown = [];
  reset();
  document.querySelectorAll("dialog").forEach((d) => d.remove());
}

async function enter() {
  try {
    state.config = { ...state.config, ...(await api.clientConfig()) };
  } catch {
    // Defaults serve.
  }
  layout();
  startCable(api.getToken(), {
    connection: (value) => {
      state.connection = value;
      emit("connection");
    },
    sinceSeq,
    reconnected: () => actions.reconnected(),
    room: actions.roomEvent,
    roomRejected: actions.roomRejected,
    presence: actions.presenceEvent,
    user: actions.userEvent,
    call: calls.callEvent,
    // The socket was refused: find out whether the token is still good.
    refused: () => api.me().catch(() => {}),
  });
  try {
    await actions.loadConversations();
  } catch (error) {
    if (error.status !== 401) toast(`Could not load conversations: ${error.message}`, "error");
  }
  // Someone may add us to a conversation without telling our socket.
  refreshTimer = setInterval(() => state.connection === "live" && actions.loadConversations().catch(() => {}), LIST_REFRESH_MS);
  route();
}

// ---- layout and routing ----

let main = null;
let panel = null;
let shell = null;
let closeMain = () => {};
let closePanelView = () => {};

function layout() {
  const sidebar = h("aside.sidebar", { "aria-label": "Chatterly" });
  main = h("main.chat", {});
  panel = h("aside.panel", { hidden: true });
  shell = h("div.shell", { dataset: { screen: "list" } }, sidebar, main, panel);
  const callLayer = h("div.call-layer");
  replace(root, h("a.skip", { href: "#composer-anchor", onclick: skipToComposer }, "Skip to the message box"), shell, callLayer);
  teardown.push(
    renderSidebar(sidebar, {
      navigate,
      newConversation: () => newConversationDialog((c) => navigate(`/c/${c.id}`)),
      showMentions: () => mentionsDialog(navigate),
      signOut,
      cycleTheme,
      themeLabel,
    }),
  );
  renderCalls(callLayer);
  teardown.push(on("route", (detail) => (detail?.navigate ? navigate(detail.navigate) : route())));
  teardown.push(on("panel", renderPanel));
  teardown.push(on("conversations", updateTitle));
}

function skipToComposer(event) {
  event.preventDefault();
  main.querySelector(".composer textarea")?.focus();
}

function updateTitle() {
  const unread = [...state.conversations.values()].reduce((n, c) => n + (c.unread_count || 0), 0);
  document.title = unread ? `(${unread}) Chatterly` : "Chatterly";
}

function navigate(path) {
  if (location.pathname !== path) history.pushState(null, "", path);
  route();
}

function route() {
  if (!state.me || !main) return;
  const match = location.pathname.match(/^\/c\/(\d+)$/);
  const id = match ? Number(match[1]) : null;
  if (match && !state.conversations.has(id)) {
    if (state.conversations.size || state.connection === "live") toast("That conversation is not available");
    history.replaceState(null, "", "/");
    return route();
  }
  if (id === state.currentId && main.childElementCount) return;
  closeMain();
  closePanelView();
  panel.hidden = true;
  shell.classList.remove("with-panel");
  if (id) {
    shell.dataset.screen = "conversation";
    actions.openConversation(id);
    closeMain = renderConversation(main, id, { back: () => navigate("/") });
  } else {
    state.currentId = null;
    state.panel = null;
    emit("open", null);
    shell.dataset.screen = "list";
    closeMain = () => {};
    replace(
      main,
      h(
        "div.empty-main",
        {},
        h("h2", {}, `Welcome, ${state.me.display_name || state.me.username}`),
        h("p", {}, "Pick a conversation, or start a new one."),
      ),
    );
  }
  updateTitle();
}

function renderPanel() {
  closePanelView();
  closePanelView = () => {};
  const id = state.currentId;
  if (!id || !state.panel) {
    panel.hidden = true;
    shell.classList.remove("with-panel");
    main.querySelector(".composer textarea")?.focus();
    return;
  }
  panel.hidden = false;
  shell.classList.add("with-panel");
  closePanelView =
    state.panel === "members" ? renderMembers(panel, id) : renderThread(panel, id, state.panel.thread);
}

// Escape closes the side panel.
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && state.panel && !document.querySelector("dialog[open]")) {
    event.preventDefault();
    actions.closePanel();
  }
});
addEventListener("popstate", route);
// Coming back to the tab reads what arrived in the open conversation meanwhile.
addEventListener("focus", () => state.me && actions.markSeen());
document.addEventListener("visibilitychange", () => state.me && actions.markSeen());

// ---- boot ----

async function boot() {
  applyTheme();
  api.whenUnauthorized(sessionEnded);
  if (!api.getToken()) return showAuth();
  try {
    state.me = await api.me();
  } catch (error) {
    if (error.status === 401) {
      api.forget();
      return showAuth("Your session has ended. Please sign in again.");
    }
    replace(root, h("main.auth", {}, h("p.boot", { role: "alert" }, `Cannot reach the server (${error.message}). `, h("button", { type: "button", onclick: boot }, "Try again"))));
    return;
  }
  enter();
}

boot();
