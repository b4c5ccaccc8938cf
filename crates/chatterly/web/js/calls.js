// Audio and video calls: the call lifecycle over REST and CallChannel
// (README "Calls"), media over WebRTC between the browsers. One peer
// connection per other participant; whoever is already in the call makes the
// offer to whoever arrives (the caller to the first acceptor on
// `call_accepted`, everyone to a late joiner on `participant_joined`), so two
// sides never offer to each other at once. ICE servers come from the server's
// `--ice-servers` (GET /api/v1/client-config); none by default (LAN).

import * as api from "./api.js";
import * as cable from "./cable.js";
import { announce, toast } from "./dom.js";
import { displayName } from "./format.js";
import { emit, state } from "./state.js";

/** The call this tab is in, or null. */
export let current = null;
/** Calls ringing for us: call id → incoming_call payload. */
export const incoming = new Map();

function changed() {
  emit("call");
}

function userById(conversationId, id) {
  const conversation = state.conversations.get(conversationId);
  return conversation?.members.find((m) => m.id === id) || { id, username: `user ${id}` };
}

async function localMedia(type) {
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video: type === "video" });
  } catch (error) {
    toast(`No ${type === "video" ? "camera or microphone" : "microphone"}: ${error.message}`, "error");
    return null;
  }
}

function newCall(fields, local) {
  return {
    peers: new Map(),
    local,
    muted: false,
    cameraOff: false,
    startedAt: null,
    ...fields,
  };
}

/** Starts a call from a conversation ("audio" or "video"). */
export async function startCall(conversationId, type) {
  if (current) {
    toast("You are already in a call");
    return;
  }
  const local = await localMedia(type);
  if (!local) return;
  let session;
  try {
    session = await api.startCall(conversationId, type);
  } catch (error) {
    stopTracks(local);
    toast(`Could not start the call: ${error.message}`, "error");
    return;
  }
  current = newCall({ id: session.id, conversationId, type, outgoing: true, status: "ringing" }, local);
  announce("Calling…");
  changed();
}

/** Accepts a ringing call; joins it instead when someone else answered first. */
export async function accept(callId) {
  const call = incoming.get(callId);
  if (!call) return;
  dismiss(callId);
  if (current) hangUp();
  const local = await localMedia(call.call_type);
  if (!local) return;
  current = newCall(
    { id: callId, conversationId: call.conversation_id, type: call.call_type, outgoing: false, status: "connecting" },
    local,
  );
  changed();
  try {
    await api.acceptCall(call.conversation_id, callId);
  } catch (error) {
    if (error.status !== 422) return fail(`Could not answer: ${error.message}`);
    try {
      // Answered already (a group call): join it; the others call us.
      await api.joinCall(call.conversation_id, callId);
    } catch (joinError) {
      return fail("That call has ended");
    }
  }
}

/** Joins a conversation's active call (from its banner). */
export async function join(conversationId, callId, type) {
  if (current) return;
  const local = await localMedia(type);
  if (!local) return;
  current = newCall({ id: callId, conversationId, type, outgoing: false, status: "connecting" }, local);
  changed();
  try {
    await api.joinCall(conversationId, callId);
  } catch (error) {
    fail(`Could not join: ${error.message}`);
  }
}

export function decline(callId) {
  if (!incoming.has(callId)) return;
  cable.callAction("decline_call", { call_session_id: callId });
  dismiss(callId);
}

function dismiss(callId) {
  const call = incoming.get(callId);
  if (!call) return;
  clearTimeout(call.timer);
  incoming.delete(callId);
  changed();
}

export function hangUp() {
  if (!current) return;
  cable.callAction("end_call", { call_session_id: current.id });
  teardown("You left the call");
}

export function toggleMute() {
  if (!current) return;
  current.muted = !current.muted;
  for (const track of current.local.getAudioTracks()) track.enabled = !current.muted;
  cable.callAction("toggle_mute", { call_session_id: current.id, muted: current.muted });
  changed();
}

export function toggleCamera() {
  if (!current || current.type !== "video") return;
  current.cameraOff = !current.cameraOff;
  for (const track of current.local.getVideoTracks()) track.enabled = !current.cameraOff;
  cable.callAction("toggle_camera", { call_session_id: current.id, camera_off: current.cameraOff });
  changed();
}

function stopTracks(stream) {
  for (const track of stream?.getTracks() || []) track.stop();
}

function teardown(notice) {
  if (!current) return;
  for (const peer of current.peers.values()) peer.pc.close();
  stopTracks(current.local);
  current = null;
  if (notice) {
    announce(notice);
    toast(notice);
  }
  changed();
}

/** Leaves the call here (and ends it for everyone if `end`). */
function fail(message, { end = false } = {}) {
  if (current && end) cable.callAction("end_call", { call_session_id: current.id });
  teardown(null);
  toast(message, "error");
}

// ---- WebRTC ----

function sendSignal(userId, signal) {
  cable.callAction("send_signal", { call_session_id: current.id, target_user_id: userId, signal });
}

function peerFor(userId) {
  const call = current;
  if (call.peers.has(userId)) return call.peers.get(userId);
  const pc = new RTCPeerConnection({ iceServers: state.config.ice_servers || [] });
  const peer = {
    user: userById(call.conversationId, userId),
    pc,
    stream: null,
    muted: false,
    cameraOff: false,
    queued: [],
    state: "connecting",
  };
  call.peers.set(userId, peer);
  for (const track of call.local.getTracks()) pc.addTrack(track, call.local);
  pc.onicecandidate = (event) => {
    if (event.candidate && current === call) {
      sendSignal(userId, { type: "ice_candidate", candidate: event.candidate.toJSON() });
    }
  };
  pc.ontrack = (event) => {
    peer.stream = event.streams[0] || new MediaStream([event.track]);
    changed();
  };
  pc.onconnectionstatechange = () => {
    peer.state = pc.connectionState;
    if (pc.connectionState === "connected" && call.status !== "active") {
      call.status = "active";
      call.startedAt = call.startedAt || Date.now();
      announce(`Connected with ${displayName(peer.user)}`);
    }
    if (pc.connectionState === "failed") toast(`The connection to ${displayName(peer.user)} failed`, "error");
    changed();
  };
  changed();
  return peer;
}

async function offerTo(userId) {
  const peer = peerFor(userId);
  const offer = await peer.pc.createOffer();
  await peer.pc.setLocalDescription(offer);
  sendSignal(userId, { type: "offer", sdp: offer.sdp });
}

async function flush(peer) {
  for (const candidate of peer.queued.splice(0)) {
    await peer.pc.addIceCandidate(candidate).catch(() => {});
  }
}

async function onSignal(fromUserId, signal) {
  if (!signal || typeof signal !== "object") return;
  const call = current;
  if (signal.type === "offer") {
    const peer = peerFor(fromUserId);
    await peer.pc.setRemoteDescription({ type: "offer", sdp: signal.sdp });
    await flush(peer);
    const answer = await peer.pc.createAnswer();
    await peer.pc.setLocalDescription(answer);
    if (current === call) sendSignal(fromUserId, { type: "answer", sdp: answer.sdp });
  } else if (signal.type === "answer") {
    const peer = call.peers.get(fromUserId);
    if (!peer) return;
    await peer.pc.setRemoteDescription({ type: "answer", sdp: signal.sdp });
    await flush(peer);
  } else if (signal.type === "ice_candidate" && signal.candidate) {
    const peer = peerFor(fromUserId);
    if (peer.pc.remoteDescription) await peer.pc.addIceCandidate(signal.candidate).catch(() => {});
    else peer.queued.push(signal.candidate);
  }
}

// ---- CallChannel events ----

export function callEvent(event) {
  const id = Number(event.call_session_id);
  const mine = current && current.id === id;
  switch (event.type) {
    case "incoming_call": {
      if (mine || incoming.has(id)) return;
      // Dismissed by the server's call_ended; the timer only covers an event
      // lost while offline.
      const timer = setTimeout(() => dismiss(id), ((state.config.call_ring_timeout || 30) + 15) * 1000);
      incoming.set(id, { ...event, call_session_id: id, timer });
      announce(`${displayName(event.caller)} is calling you (${event.call_type})`);
      changed();
      return;
    }
    case "call_ended": {
      const ringing = incoming.get(id);
      if (ringing) {
        dismiss(id);
        if (event.status === "missed") toast(`Missed ${ringing.call_type} call from ${displayName(ringing.caller)}`);
      }
      if (mine) {
        const notice = { missed: "No answer", declined: "The call was declined" }[event.status] || "The call ended";
        teardown(notice);
      }
      return;
    }
    case "call_declined":
      if (mine) teardown(`${displayName(event.declined_by)} declined the call`);
      return;
    case "call_accepted":
      if (!mine) return;
      current.status = "connecting";
      changed();
      offerTo(event.accepted_by.id).catch((error) => fail(`Call setup failed: ${error.message}`, { end: true }));
      return;
    case "participant_joined":
      if (!mine || event.user.id === state.me.id) return;
      offerTo(event.user.id).catch((error) => fail(`Call setup failed: ${error.message}`));
      return;
    case "signal":
      if (!mine) return;
      onSignal(event.from_user_id, event.signal).catch((error) => console.warn("signal failed", error));
      return;
    case "participant_muted":
    case "participant_camera_toggled": {
      const peer = mine && current.peers.get(event.user_id);
      if (!peer) return;
      if ("muted" in event) peer.muted = event.muted;
      if ("camera_off" in event) peer.cameraOff = event.camera_off;
      changed();
      return;
    }
    default:
      return;
  }
}

/** Signing out: leave any call, forget ringing ones. */
export function reset() {
  if (current) hangUp();
  for (const id of [...incoming.keys()]) dismiss(id);
}
