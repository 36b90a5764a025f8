"""The official OpenAI JS SDKs (``openai`` and ``@openai/agents-realtime`` from npm, pinned
in ``tests/js``), loaded by a page on its own origin in a real Chromium, with the broker as
their base URL and the user's JWT as their key: the README's browser examples, through a
real CORS preflight.

The SDKs add their own headers to every request (platform and retry headers,
``OpenAI-Beta`` on the beta endpoints, the Agents SDK's version); a preflight that did not
allow them would fail every call."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page

from browser import static_origin
from conftest import POLICIES, StartBroker, make_token
from live import Fake, metric
from servers import TokenbrokerServer, wait_until

MODULES = Path(__file__).parent / "js" / "node_modules"
SDK = MODULES / "openai"
AGENTS = MODULES / "@openai" / "agents-realtime" / "dist" / "bundle"  # its browser build

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>sdk app</title></head><body>
<p id="ready">loading</p>
<script type="module">
  import OpenAI from "./openai/index.mjs";
  import * as agents from "./agents/openai-realtime-agents.mjs";
  window.OpenAI = OpenAI;
  window.agents = agents;
  document.getElementById("ready").textContent = "ready";
</script>
</body></html>
"""

# Each call returns what the page saw: the result, or the SDK's error class with the
# broker's code and param.
CALL = """async ({broker, token, call}) => {
  const client = new OpenAI({baseURL: broker + "/v1", apiKey: token, maxRetries: 0,
                             dangerouslyAllowBrowser: true});
  try {
    if (call === "ga") {
      const secret = await client.realtime.clientSecrets.create(
        {session: {type: "realtime", audio: {output: {voice: "alloy"}}}});
      return {ok: true, value: secret.value, type: secret.session.type};
    }
    if (call === "beta") {
      const session = await client.beta.realtime.sessions.create({voice: "alloy"});
      return {ok: true, value: session.client_secret.value};
    }
    await client.realtime.clientSecrets.create(
      {session: {type: "realtime", audio: {output: {voice: "marin"}}}});
    return {ok: true};
  } catch (error) {
    return {ok: false, name: error.constructor.name, status: error.status, code: error.code,
            param: error.param};
  }
}"""


# A voice agent through the broker's live calls: the Agents SDK's WebRTC transport posts
# its offer to the broker with the user's JWT (not an ek_, hence useInsecureApiKey: the JWT
# is the user's own, the organisation's key stays in the broker) and, once the data channel
# opens, sends the agent's session (its instructions among them) as a session.update.
AGENT = """async ({broker, token, instructions}) => {
  const {RealtimeAgent, RealtimeSession, OpenAIRealtimeWebRTC} = window.agents;
  const transport = new OpenAIRealtimeWebRTC(
    {baseUrl: broker + "/v1/realtime/calls", useInsecureApiKey: true});
  window.events = [];
  transport.on("*", (event) => window.events.push(event));
  window.session = new RealtimeSession(new RealtimeAgent({name: "assistant", instructions}),
                                       {transport, model: "gpt-realtime"});
  await window.session.connect({apiKey: token});
  return transport.callId;
}"""


# A WebRTC call made with the openai SDK's own calls resource: the page's offer (a fake
# microphone and the events channel) as the SDK's multipart, the answer set, the call's
# id from the exposed Location, the data channel open; then the SDK hangs up.
WEBRTC = """async ({broker, token}) => {
  const client = new OpenAI({baseURL: broker + "/v1", apiKey: token, maxRetries: 0,
                             dangerouslyAllowBrowser: true});
  const pc = new RTCPeerConnection();
  const mic = await navigator.mediaDevices.getUserMedia({audio: true});
  pc.addTrack(mic.getTracks()[0]);
  const channel = pc.createDataChannel("oai-events");
  const opened = new Promise((resolve) => channel.addEventListener("open", resolve));
  await pc.setLocalDescription(await pc.createOffer());
  const {data, response} = await client.realtime.calls.create(
    {sdp: pc.localDescription.sdp,
     session: {type: "realtime", audio: {output: {voice: "marin"}}}}).withResponse();
  await pc.setRemoteDescription({type: "answer", sdp: await data.text()});
  await opened;
  const callId = response.headers.get("Location").split("/").pop();
  window.hangup = () => client.realtime.calls.hangup(callId);
  return callId;
}"""


# A GPT-Live session made with the openai SDK's live resource: the page's offer in OpenAI's
# JSON, the answer applied, the session started on the data channel (session.started).
LIVE = """async ({broker, token}) => {
  const client = new OpenAI({baseURL: broker + "/v1", apiKey: token, maxRetries: 0,
                             dangerouslyAllowBrowser: true});
  const pc = new RTCPeerConnection();
  const mic = await navigator.mediaDevices.getUserMedia({audio: true});
  pc.addTrack(mic.getTracks()[0]);
  const channel = pc.createDataChannel("oai-events");
  window.liveEvents = [];
  const started = new Promise((resolve) => channel.addEventListener("message", (m) => {
    const event = JSON.parse(m.data);
    window.liveEvents.push(event);
    if (event.type === "session.started") resolve(event);
  }));
  await pc.setLocalDescription(await pc.createOffer());
  const created = await client.live.create(
    {session: {model: "gpt-live-1"}, transport: {type: "webrtc", sdp: pc.localDescription.sdp}});
  await pc.setRemoteDescription({type: "answer", sdp: created.transport.sdp});
  const event = await started;
  window.liveChannel = channel;
  return {id: created.session.id, model: event.session.model};
}"""


@pytest.fixture(scope="module")
def sdk_app(start_broker: StartBroker) -> Iterator[dict[str, Any]]:
    """A page that imports the SDKs, on an origin the broker allows; one broker on the
    default test policy, one on the live-call policies."""
    for module in (SDK / "index.mjs", AGENTS / "openai-realtime-agents.mjs"):
        assert module.is_file(), "run `npm ci` in tests/js (scripts/test does)"
    root = Path(tempfile.mkdtemp(prefix="tb-sdk-"))
    (root / "index.html").write_text(PAGE)
    (root / "openai").symlink_to(SDK.resolve(), target_is_directory=True)
    (root / "agents").symlink_to(AGENTS.resolve(), target_is_directory=True)
    try:
        with static_origin(root) as origin:
            cors = {"allowed_origins": [origin]}
            broker = start_broker(upstream={"dialect": "openai"}, cors=cors)
            calls = start_broker(POLICIES / "calls.yaml", upstream={"dialect": "openai"},
                                 cors=cors)  # fmt: skip
            live = start_broker(POLICIES / "live.yaml", upstream={"dialect": "openai"},
                                cors=cors)  # fmt: skip
            yield {"broker": broker.url, "calls": calls.url, "origin": origin,
                   "calls_server": calls, "live": live.url}  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


def open_page(page: Page, app: dict[str, Any]) -> None:
    page.goto(app["origin"] + "/index.html")
    page.wait_for_function("document.getElementById('ready').textContent === 'ready'")


def call(page: Page, app: dict[str, Any], which: str) -> dict[str, Any]:
    open_page(page, app)
    args = {"broker": app["broker"], "token": make_token(f"sdk-{which}"), "call": which}
    result: dict[str, Any] = page.evaluate(CALL, args)
    return result


@pytest.mark.parametrize("which", ["ga", "beta"])
def test_the_official_js_sdk_mints_from_a_page(
    page: Page, sdk_app: dict[str, Any], which: str
) -> None:
    """`client.realtime.clientSecrets.create()` and `client.beta.realtime.sessions.create()`
    from another origin: the preflight allows the SDK's headers, the secret comes back."""
    result = call(page, sdk_app, which)
    assert result["ok"], result
    assert result["value"].startswith("ek_")


def test_a_refusal_reaches_the_page_as_the_sdks_error(page: Page, sdk_app: dict[str, Any]) -> None:
    """A voice the policy refuses is the SDK's PermissionDeniedError in the page, with the
    broker's code and the GA request's path as param (the reply's CORS headers let the
    page read it)."""
    result = call(page, sdk_app, "refused")
    assert result == {
        "ok": False, "name": "PermissionDeniedError", "status": 403,
        "code": "voice_not_allowed", "param": "session.audio.output.voice",
    }  # fmt: skip


def test_the_official_js_sdk_makes_and_ends_a_webrtc_call(
    page: Page, sdk_app: dict[str, Any], fake_upstream_server: TokenbrokerServer
) -> None:
    """`client.realtime.calls.create({sdp, session})` from a page, through the preflight: a
    real WebRTC call with the session the page asked for, ended by `calls.hangup()`."""
    fake = Fake(fake_upstream_server.url, fake_upstream_server)
    open_page(page, sdk_app)
    args = {"broker": sdk_app["calls"], "token": make_token("sdk-webrtc")}
    call_id = page.evaluate(WEBRTC, args)
    fake.watched(call_id)
    state = fake.call(call_id)
    assert state["webrtc"] and state["session"]["audio"]["output"]["voice"] == "marin"
    page.evaluate("window.hangup()")
    assert fake.ended(call_id)["ended_by"] == "hangup"


# What the broker leaves of the Agents SDK's session, per policy: the watched policy allows
# none of what the SDK turns on; the agents policy allows all of it but the instructions.
AGENT_POLICIES: dict[str, dict[str, str | None]] = {
    "watched": {"transcription": None, "turn_detection": "server_vad", "tracing": None},
    "agents": {"transcription": "gpt-4o-mini-transcribe", "turn_detection": "semantic_vad",
               "tracing": "auto"},
}  # fmt: skip


@pytest.mark.parametrize("tier", AGENT_POLICIES)
def test_a_voice_agent_talks_through_a_watched_call(
    page: Page, sdk_app: dict[str, Any], fake_upstream_server: TokenbrokerServer, tier: str
) -> None:
    """`RealtimeSession.connect()` with the broker's calls endpoint and the user's JWT: a
    real WebRTC call to the upstream, the call id from the broker's `Location`, what the
    agent turned on outside the policy (its own instructions; on the watched policy also
    transcription, semantic VAD, tracing) brought back by the broker's watch, and what the
    policy allows left alone; the call goes on until the page closes it."""
    fake = Fake(fake_upstream_server.url, fake_upstream_server)
    open_page(page, sdk_app)
    token = make_token(f"sdk-agent-{tier}", tier=tier)
    args = {"broker": sdk_app["calls"], "token": token, "instructions": "Talk like a pirate."}
    call_id = page.evaluate(AGENT, args)
    assert call_id and call_id.startswith("rtc_")
    fake.watched(call_id)
    assert fake.call(call_id)["webrtc"]  # the page's offer reached a real peer
    sent = fake.call(call_id)["from_browser"][0]["session"]  # the agent's own session
    assert sent["instructions"] == "Talk like a pirate."
    assert sent["audio"]["input"]["transcription"] is not None
    wanted = AGENT_POLICIES[tier]

    def settled() -> bool:
        session = fake.call(call_id)["session"]
        audio_in = session["audio"]["input"]
        return bool(session["instructions"] == "You are the support assistant."
                and session["tracing"] == wanted["tracing"]
                and (audio_in["transcription"] or {}).get("model") == wanted["transcription"]
                and audio_in["turn_detection"]["type"] == wanted["turn_detection"])  # fmt: skip

    wait_until(settled)
    assert fake.call(call_id)["live"]  # reverted, not hung up
    page.wait_for_function(
        "window.events.some(e => e.type === 'session.updated'"
        " && e.session.instructions === 'You are the support assistant.')"
    )

    def ends() -> float:
        return metric(sdk_app["calls_server"], "tokenbroker_call_ends_total", reason="client")

    before = ends()
    page.evaluate("window.session.close()")  # the page leaves: the upstream ends the call
    assert fake.ended(call_id)["ended_by"] == "browser"
    wait_until(lambda: ends() == before + 1)  # the broker saw it end, the user's slot is free


def test_the_official_js_sdk_holds_a_gpt_live_session(
    page: Page, sdk_app: dict[str, Any], fake_upstream_server: TokenbrokerServer
) -> None:
    """`client.live.create({session, transport})` from a page with the user's JWT: the
    upstream (a real WebRTC peer) got the policy's session, started it on the page's data
    channel, and refuses a client event the policy's permissions leave out."""
    open_page(page, sdk_app)
    args = {"broker": sdk_app["live"], "token": make_token("sdk-live")}
    created = page.evaluate(LIVE, args)
    assert created["model"] == "gpt-live-1"
    state = httpx.get(f"{fake_upstream_server.url}/_fake/live/{created['id']}").json()
    assert state["webrtc"]
    assert state["session"]["instructions"] == "You are the support line. Be brief."
    page.evaluate("window.liveChannel.send(JSON.stringify({type: 'session.update', "
                  "session: {triggers: []}}))")  # fmt: skip
    page.wait_for_function("window.liveEvents.some(e => e.type === 'error'"
                           " && e.error.code === 'event_not_allowed')")  # fmt: skip
    state = httpx.get(f"{fake_upstream_server.url}/_fake/live/{created['id']}").json()
    assert state["refused"] == ["session.update"]
