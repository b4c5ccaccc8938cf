// Calls on screen: the incoming-call dialog and the in-call view.

import * as calls from "../calls.js";
import { h, icon, replace } from "../dom.js";
import { conversationTitle, displayName, duration } from "../format.js";
import { on, state } from "../state.js";
import { avatar } from "./messages.js";

export function renderCalls(root) {
  const dialog = h("dialog.modal.incoming", { role: "alertdialog", "aria-labelledby": "incoming-title", "aria-describedby": "incoming-text" });
  dialog.addEventListener("cancel", (event) => {
    // Escape declines, like the Decline button.
    event.preventDefault();
    if (shownIncoming) calls.decline(shownIncoming);
  });
  const view = h("section.call-view", { hidden: true, "aria-label": "Call", role: "region" });
  root.append(dialog, view);
  let shownIncoming = null;
  const tiles = new Map();
  let tick = null;

  function renderIncoming() {
    const [first] = calls.incoming.values();
    if (!first) {
      shownIncoming = null;
      if (dialog.open) dialog.close();
      return;
    }
    if (shownIncoming === first.call_session_id && dialog.open) return;
    shownIncoming = first.call_session_id;
    const conversation = state.conversations.get(first.conversation_id);
    const where = conversation && conversation.conversation_type !== "direct" ? ` in ${conversationTitle(conversation, state.me)}` : "";
    replace(
      dialog,
      avatar(first.caller, ".large"),
      h("h2", { id: "incoming-title" }, `${displayName(first.caller)} is calling`),
      h("p", { id: "incoming-text" }, `Incoming ${first.call_type} call${where}`),
      h(
        "div.dialog-actions",
        {},
        h("button.danger", { type: "button", onclick: () => calls.decline(first.call_session_id) }, icon("hangup"), "Decline"),
        h("button.accept", { type: "button", autofocus: true, onclick: () => calls.accept(first.call_session_id) }, icon(first.call_type === "video" ? "video" : "phone"), "Accept"),
      ),
    );
    if (!dialog.open) dialog.showModal();
    dialog.querySelector("button.accept").focus();
  }

  function statusText(call) {
    if (call.status === "ringing") return "Calling…";
    if (call.status === "connecting") return "Connecting…";
    return `In call · ${duration((Date.now() - call.startedAt) / 1000)}`;
  }

  function tile(key, user, stream, { local = false, video = false } = {}) {
    let entry = tiles.get(key);
    if (!entry) {
      const media = video ? h("video", { autoplay: true, playsinline: true, muted: local }) : h("audio", { autoplay: true });
      const badges = h("div.badges");
      const el = h(`div.tile${local ? ".local" : ""}`, {}, media, avatar(user, ".large"), h("p.tile-name", {}, local ? "You" : displayName(user)), badges);
      entry = { el, media, badges };
      tiles.set(key, entry);
    }
    if (stream && entry.media.srcObject !== stream) {
      entry.media.srcObject = stream;
      entry.media.play?.().catch(() => {});
    }
    return entry;
  }

  // Built once per call and then updated in place: a media element taken out
  // of the page stops playing.
  let parts = null;

  function skeleton() {
    const title = h("h2");
    const status = h("p.call-status");
    const waiting = h("p.waiting", {}, "Waiting for an answer…");
    const grid = h("div.tiles", {}, waiting);
    const controls = h("div.call-controls", { role: "group", "aria-label": "Call controls" });
    replace(view, h("header", {}, title, status), grid, controls);
    return { title, status, waiting, grid, controls };
  }

  function control(fk, label, pressed, name, text, onclick, extra = "") {
    return h(
      `button.round${extra}`,
      { type: "button", "aria-label": label, "aria-pressed": pressed === null ? false : String(pressed), dataset: { fk }, onclick },
      icon(name),
      h("span", { "aria-hidden": "true" }, text),
    );
  }

  function renderView() {
    const call = calls.current;
    if (!call) {
      view.hidden = true;
      view.replaceChildren();
      parts = null;
      tiles.clear();
      clearInterval(tick);
      tick = null;
      return;
    }
    const fresh = !parts;
    if (fresh) parts = skeleton();
    const video = call.type === "video";
    const conversation = state.conversations.get(call.conversationId);
    parts.title.textContent = `${video ? "Video" : "Audio"} call · ${conversation ? conversationTitle(conversation, state.me) : ""}`;
    parts.status.textContent = statusText(call);

    const local = tile("local", state.me, call.local, { local: true, video });
    local.el.classList.toggle("camera-off", !video || call.cameraOff);
    replace(local.badges, call.muted && h("span.badge", {}, icon("mic-off"), "Muted"));
    if (!local.el.isConnected) parts.grid.append(local.el);
    const keep = new Set(["local"]);
    for (const [userId, peer] of call.peers) {
      const key = `u${userId}`;
      keep.add(key);
      const entry = tile(key, peer.user, peer.stream, { video });
      entry.el.classList.toggle("camera-off", !video || peer.cameraOff);
      entry.el.dataset.state = peer.state;
      replace(
        entry.badges,
        peer.muted && h("span.badge", {}, icon("mic-off"), "Muted"),
        video && peer.cameraOff && h("span.badge", {}, icon("video-off"), "Camera off"),
        peer.state !== "connected" && h("span.badge", {}, peer.state === "failed" ? "Connection failed" : "Connecting…"),
      );
      if (!entry.el.isConnected) parts.grid.insertBefore(entry.el, local.el);
    }
    for (const [key, entry] of [...tiles]) {
      if (!keep.has(key)) {
        entry.el.remove();
        tiles.delete(key);
      }
    }
    parts.waiting.hidden = call.peers.size > 0;

    const focused = parts.controls.contains(document.activeElement) ? document.activeElement.dataset.fk : null;
    replace(
      parts.controls,
      control("mute", call.muted ? "Unmute microphone" : "Mute microphone", call.muted, call.muted ? "mic-off" : "mic", call.muted ? "Unmute" : "Mute", calls.toggleMute),
      video &&
        control("camera", call.cameraOff ? "Turn camera on" : "Turn camera off", call.cameraOff, call.cameraOff ? "video-off" : "video", call.cameraOff ? "Camera on" : "Camera off", calls.toggleCamera),
      control("hangup", "Hang up", null, "hangup", "Hang up", calls.hangUp, ".danger"),
    );
    if (focused) parts.controls.querySelector(`[data-fk="${focused}"]`)?.focus();
    view.hidden = false;
    if (fresh) parts.controls.querySelector("button")?.focus();
    if (!tick) {
      tick = setInterval(() => {
        if (parts && calls.current) parts.status.textContent = statusText(calls.current);
      }, 1000);
    }
  }

  on("call", () => {
    renderIncoming();
    renderView();
  });
  renderIncoming();
  renderView();
}
