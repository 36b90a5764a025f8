// tokenbroker browser client: a plain ES module, no build step, no dependency.
//
//   import { connect, mintClientSecret, apiKey, BrokerError } from "https://broker.example.com/v1/client.js";
//
// connect(): a live call through the broker (no key in the page): microphone,
//   RTCPeerConnection, the "oai-events" data channel, the SDP offer to
//   POST /v1/realtime/calls with the user's JWT; with api: "live", a GPT-Live session
//   (POST /v1/live/sessions). Resolves to a Call (below).
// mintClientSecret(): a client secret from POST /v1/realtime/client_secrets, for SDKs
//   that connect by themselves; apiKey() wraps it as the async function
//   @openai/agents-realtime takes as its apiKey.
// Every refusal rejects with a BrokerError carrying the broker's error envelope
// (status, type, code, message, param, retryAfter).

const DEFAULT_BROKER = new URL(".", import.meta.url).href.replace(/\/v1\/$/, "");

export class BrokerError extends Error {
  constructor(status, error, retryAfter = null) {
    super(error.message);
    this.name = "BrokerError";
    this.status = status;
    this.type = error.type;
    this.code = error.code;
    this.param = error.param ?? null;
    this.retryAfter = retryAfter === null ? null : Number(retryAfter);
  }
}

async function bearer(token) {
  const value = typeof token === "function" ? await token() : token;
  if (!value) throw new BrokerError(0, { type: "client_error", code: "missing_token",
                                         message: "connect() needs the user's token." });
  return { Authorization: `Bearer ${value}` };
}

async function refusal(res) {
  let error = null;
  try { error = (await res.json()).error; } catch { /* not the envelope */ }
  error ??= { type: "server_error", code: "unexpected_reply",
              message: `The broker answered HTTP ${res.status}.`, param: null };
  return new BrokerError(res.status, error, res.headers.get("Retry-After"));
}

async function post(url, headers, body) {
  const res = await fetch(url, { method: "POST", headers, body });
  if (!res.ok) throw await refusal(res);
  return res;
}

/** A client secret: {value, expires_at, session: {type, model}}. */
export async function mintClientSecret({ broker = DEFAULT_BROKER, token, session = { type: "realtime" },
                                         expiresAfter } = {}) {
  const body = { session };
  if (expiresAfter) body.expires_after = { anchor: "created_at", seconds: expiresAfter };
  const res = await post(`${broker}/v1/realtime/client_secrets`,
                         { ...(await bearer(token)), "Content-Type": "application/json" },
                         JSON.stringify(body));
  return res.json();
}

/** An async function returning a fresh "ek_…" secret each time (an SDK's apiKey). */
export function apiKey(options) {
  return async () => (await mintClientSecret(options)).value;
}

function gathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);  // send what was gathered by then
  });
}

/**
 * Opens a live call, or with api: "live" a GPT-Live session (POST /v1/live/sessions; its
 * session object is GPT-Live's, e.g. {model: "gpt-live-1.1"}; hangup() sends session.close
 * on the data channel). Options: broker (base URL, default: where this module came from),
 * token (the user's JWT, or a function returning it), session (a GA session object;
 * omitted: the policy's defaults), stream (a MediaStream to send; default: the
 * microphone), audio (false: no microphone), onEvent (called with each server event).
 *
 * The Call: callId, state ("connecting" | "open" | "ended"), events (an EventTarget:
 * "event" with each server event as detail, "state", "ended" with the reason: "hangup"
 * when the page hung up, else the broker's (duration, idle, budget, violation, client,
 * upstream, operator), else "closed" or "failed"), send(event) (before the data channel
 * opens, events wait and go in order once it does),
 * hangup(), info() (start, end, budgets left), ended (a promise of the end reason),
 * audio (the HTMLAudioElement playing the model), pc, channel.
 */
async function offerRealtime(broker, auth, session, sdp) {
  let res;
  if (session) {
    const form = new FormData();
    form.set("sdp", sdp);
    form.set("session", JSON.stringify(session));
    res = await post(`${broker}/v1/realtime/calls`, auth, form);
  } else {
    res = await post(`${broker}/v1/realtime/calls`, { ...auth, "Content-Type": "application/sdp" }, sdp);
  }
  const location = res.headers.get("Location");
  return { id: location.split("/").pop(), location, answer: await res.text() };
}

async function offerLive(broker, auth, session, sdp) {
  const res = await post(`${broker}/v1/live/sessions`, { ...auth, "Content-Type": "application/json" },
                         JSON.stringify({ session: session ?? {}, transport: { type: "webrtc", sdp } }));
  const body = await res.json();
  return { id: body.session.id, location: res.headers.get("Location"), answer: body.transport.sdp };
}

export async function connect({ broker = DEFAULT_BROKER, token, session, stream, audio = true,
                                onEvent, api = "realtime" } = {}) {
  const auth = await bearer(token);
  const pc = new RTCPeerConnection();
  const media = stream ?? (audio ? await navigator.mediaDevices.getUserMedia({ audio: true }) : null);
  const stop = () => media?.getTracks().forEach((t) => t.stop());
  if (media) for (const track of media.getAudioTracks()) pc.addTrack(track, media);
  else pc.addTransceiver("audio", { direction: "recvonly" });
  const player = new Audio();
  player.autoplay = true;
  pc.addEventListener("track", (e) => { player.srcObject = e.streams[0]; });

  const events = new EventTarget();
  const channel = pc.createDataChannel("oai-events");
  let state = "connecting", endReason = null, endedResolve;
  const ended = new Promise((resolve) => { endedResolve = resolve; });
  const setState = (next, reason = null) => {
    if (state === "ended" || state === next) return;
    state = next;
    events.dispatchEvent(new CustomEvent("state", { detail: next }));
    if (next === "ended") {
      endReason = reason;
      stop();
      pc.close();
      events.dispatchEvent(new CustomEvent("ended", { detail: reason }));
      endedResolve(reason);
    }
  };
  let location = null;
  // Why the broker ended it (duration, idle, budget, violation, …), when the
  // page did not: the call's GET says, for a while after its end; else the network's word.
  const endedBy = async (fallback) => {
    if (state === "ended" || endReason) return setState("ended", endReason ?? fallback);
    let reason = fallback;
    try {
      const r = await fetch(`${broker}${location}`, { headers: auth, signal: AbortSignal.timeout(3000) });
      const info = r.ok ? await r.json() : null;
      if (info && ["ending", "ended"].includes(info.status) && info.reason) reason = info.reason;
    } catch { /* the broker is out of reach: the network's reason stands */ }
    setState("ended", reason);
  };
  const waiting = [];  // what send() got before the channel opened, in order
  const opened = new Promise((resolve) => channel.addEventListener("open", resolve));
  channel.addEventListener("open", () => {
    for (const data of waiting.splice(0)) channel.send(data);
    setState("open");
  });
  channel.addEventListener("close", () => (location ? endedBy("closed") : setState("ended", "closed")));
  channel.addEventListener("message", (m) => {
    let event;
    try { event = JSON.parse(m.data); } catch { return; }
    events.dispatchEvent(new CustomEvent("event", { detail: event }));
    onEvent?.(event);
  });
  pc.addEventListener("connectionstatechange", () => {
    if (["failed", "closed"].includes(pc.connectionState)) {
      if (location) endedBy(pc.connectionState); else setState("ended", pc.connectionState);
    }
  });

  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc, 2000);
  let created;
  try {
    created = await (api === "live" ? offerLive : offerRealtime)(broker, auth, session,
                                                                 pc.localDescription.sdp);
  } catch (error) {
    stop();
    pc.close();
    throw error;
  }
  const { id } = created;
  location = created.location;
  await pc.setRemoteDescription({ type: "answer", sdp: created.answer });

  return {
    callId: id, api,
    get state() { return state; },
    events, ended, pc, channel, audio: player,
    send(event) {
      const data = JSON.stringify(event);
      if (channel.readyState === "open") channel.send(data);
      else if (state === "connecting") waiting.push(data);
      else throw new Error("The call has ended.");
    },
    async info() {
      const r = await fetch(`${broker}${location}`, { headers: auth });
      if (!r.ok) throw await refusal(r);
      return r.json();
    },
    async hangup() {
      endReason = "hangup";
      if (api === "live") {  // GPT-Live: the session ends when the page asks it to close
        if (state === "connecting") await Promise.race([opened, new Promise((r) => setTimeout(r, 5000))]);
        if (channel.readyState === "open") channel.send(JSON.stringify({ type: "session.close" }));
        setState("ended", "hangup");
        return;
      }
      const r = await fetch(`${broker}${location}`, { method: "DELETE", headers: auth });
      setState("ended", "hangup");
      if (!r.ok && r.status !== 404) throw await refusal(r);
    },
  };
}
