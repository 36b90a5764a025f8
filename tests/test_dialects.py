"""Three upstream dialects under one policy: the seed's endpoint mints through GA OpenAI,
the beta API and Azure, each request checked against its dialect's official schema."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from conftest import API_KEY, FakeUpstream, StartBroker, make_token
from servers import TokenbrokerServer
from tokenbroker.families.realtime.dialects.ga import GA_PATHS, from_ga, ga_path, to_ga

SESSIONS = "/v1/realtime/sessions"


def official(schema_file: str, component: str) -> Draft202012Validator:
    """The schema data derived from the official OpenAPI document, checked by jsonschema
    (not by the broker's validator)."""
    text = resources.files("tokenbroker").joinpath("schemas", schema_file)
    data = json.loads(text.read_text())
    return Draft202012Validator({**data, "$ref": f"#/$defs/{component}"})


GA = official("realtime-client-secrets.json", "RealtimeCreateClientSecretRequest")
BETA = official("realtime-sessions.json", "RealtimeSessionCreateRequest")
FULL_SEED = {
    "model": "gpt-4o-mini-realtime-preview", "modalities": ["audio", "text"],
    "instructions": "Be brief.", "voice": "ash", "input_audio_format": "pcm16",
    "output_audio_format": "g711_ulaw", "input_audio_transcription": {"model": "whisper-1"},
    "turn_detection": {"type": "server_vad", "silence_duration_ms": 500, "eagerness": "low"},
    "input_audio_noise_reduction": {"type": "near_field"},
    "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}],
    "tool_choice": "auto", "temperature": 0.8, "max_response_output_tokens": 512,
}  # fmt: skip


class TestShapes:
    def test_the_seed_session_in_ga_shape(self) -> None:
        """Every seed field lands where GA has it; temperature and a key of another
        turn-detection type are named as not sent; the body is valid GA."""
        body, dropped = to_ga(FULL_SEED, {})
        assert list(GA.iter_errors(body)) == []
        session = body["session"]
        assert session["type"] == "realtime" and session["output_modalities"] == ["audio"]
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["audio"]["output"] == {"format": {"type": "audio/pcmu"}, "voice": "ash"}
        assert session["audio"]["input"]["turn_detection"] == {
            "type": "server_vad", "silence_duration_ms": 500}  # fmt: skip
        assert session["max_output_tokens"] == 512 and "temperature" not in session
        assert dropped == ("turn_detection.eagerness", "temperature")

    @pytest.mark.parametrize(
        "ga",
        [
            {"type": "realtime", "model": "gpt-realtime", "output_modalities": ["text"]},
            {"type": "realtime", "audio": {"output": {"voice": {"id": "voice_123"}, "speed": 1.2,
             "format": {"type": "audio/pcma"}}}, "tracing": "auto"},
            {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm",
             "rate": 24000}, "noise_reduction": {"type": "far_field"}}}, "max_output_tokens": 9},
            {"type": "transcription", "audio": {"input": {"transcription": {
             "model": "gpt-4o-transcribe"}}},
             "include": ["item.input_audio_transcription.logprobs"]},
        ],
    )  # fmt: skip
    def test_ga_round_trips(self, ga: dict[str, Any]) -> None:
        """A GA session read as seed fields + GA-only fields is written back unchanged."""
        assert list(GA.iter_errors({"session": ga})) == []
        body, dropped = to_ga(*from_ga(ga))
        assert body == {"session": ga} and dropped == ()

    def test_the_ga_paths_are_where_the_fields_go(self) -> None:
        """GA_PATHS (the names of a GA request's refusals and clamps) point where to_ga
        writes each seed field and GA-only key, in a body valid GA."""
        ga_only = {"speed": 1.1, "tracing": "auto", "reasoning": {"effort": "low"},
                   "prompt": {"id": "pmpt_1"}, "include": [], "truncation": "auto",
                   "parallel_tool_calls": True, "expires_after": 60}  # fmt: skip
        seed = {k: v for k, v in FULL_SEED.items() if k != "temperature"}
        body, _ = to_ga(seed, ga_only)
        assert list(GA.iter_errors(body)) == []
        assert set(GA_PATHS) == set(seed) | set(ga_only)
        for name, path in GA_PATHS.items():
            node: Any = body
            for step in path.split("."):
                assert isinstance(node, dict) and step in node, (name, path, body)
                node = node[step]
        assert ga_path("tools[0]") == "session.tools[0]"
        assert ga_path("turn_detection.eagerness") == "session.audio.input.turn_detection.eagerness"
        assert ga_path("temperature") == "temperature"  # GA has no place for it

    def test_expiry_goes_beside_the_session(self) -> None:
        """A client-secret TTL becomes GA's expires_after."""
        body, _ = to_ga({"model": "gpt-realtime"}, {"expires_after": 120})
        assert body["expires_after"] == {"anchor": "created_at", "seconds": 120}
        assert list(GA.iter_errors(body)) == []


def mint(broker: TokenbrokerServer, user: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {make_token(user)}"}
    return httpx.post(broker.url + SESSIONS, json=body, headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("dialect", "path", "key_in"),
    [
        ("openai", "/v1/realtime/client_secrets", "authorization"),
        ("openai-beta", "/v1/realtime/sessions", "authorization"),
        ("azure", "/openai/v1/realtime/client_secrets", "api_key"),
    ],
)
def test_the_seed_endpoint_mints_through_every_dialect(
    start_broker: StartBroker,
    upstream: FakeUpstream,
    dialect: str,
    path: str,
    key_in: str,
) -> None:
    """The seed's request and reply stay the same; what reaches the upstream is its
    dialect's shape, valid under its official schema, with the key where it wants it;
    a field clamped, or one the dialect lacks, is named in Policy-Adjusted, once."""
    base = upstream.url.removesuffix("/v1") + ("/openai/v1" if dialect == "azure" else "/v1")
    env = {"AZURE_OPENAI_API_KEY": API_KEY} if dialect == "azure" else None
    broker = start_broker(upstream={"url": base, "dialect": dialect}, env=env)
    # 1.0 is above the policy's 0.9: clamped, and on the GA dialects not sent either
    reply = mint(broker, f"dialect-{dialect}", {"voice": "ash", "temperature": 1.0})
    assert reply.status_code == 200, reply.text
    assert set(reply.json()) == {"client_secret", "model"}
    assert reply.json()["client_secret"]["value"].startswith("ek_")
    [request] = upstream.received()
    assert request["path"] == path
    sent = json.loads(request["body"])
    oracle = BETA if dialect == "openai-beta" else GA
    assert list(oracle.iter_errors(sent)) == []
    if key_in == "api_key":
        assert request["api_key"] == API_KEY and request["authorization"] == ""
    else:
        assert request["authorization"] == f"Bearer {API_KEY}"
    assert reply.headers["policy-adjusted"] == "temperature"  # once, whatever the reasons
    if dialect != "openai-beta":
        assert sent["session"]["audio"]["output"]["voice"] == "ash"


def test_azure_needs_its_resource_url(tmp_path: Any) -> None:
    """The azure dialect with OpenAI's URL is refused before start, by path."""
    from tokenbroker.config.load import SettingsError, settings_from_dict

    provider = {"issuer": "i", "algorithms": ["RS256"], "jwks_url": "https://i/jwks"}
    with pytest.raises(SettingsError) as caught:
        settings_from_dict(
            {"upstream": {"dialect": "azure"}, "auth": {"providers": [provider]}}, {}, tmp_path
        )
    assert caught.value.errors == [
        "upstream.url: with dialect azure, set https://{resource}.openai.azure.com/openai/v1"
    ]


@pytest.mark.parametrize(
    ("dialect", "path"),
    [
        ("openai", "/v1/realtime/client_secrets"),
        ("openai-beta", "/v1/realtime/sessions"),
        ("azure", "/openai/v1/realtime/client_secrets"),
    ],
)
def test_the_ga_endpoint_mints_through_every_dialect(
    start_broker: StartBroker, upstream: FakeUpstream, dialect: str, path: str
) -> None:
    """The GA endpoint's reply is the same whatever the dialect; the upstream gets its own
    shape, valid under its official schema; on the beta dialect the GA-only fields are not
    sent and are named in Policy-Adjusted by their GA paths."""
    base = upstream.url.removesuffix("/v1") + ("/openai/v1" if dialect == "azure" else "/v1")
    env = {"AZURE_OPENAI_API_KEY": API_KEY} if dialect == "azure" else None
    broker = start_broker(upstream={"url": base, "dialect": dialect}, env=env)
    headers = {"Authorization": f"Bearer {make_token(f'ga-{dialect}')}"}
    body = {
        "expires_after": {"anchor": "created_at", "seconds": 60},
        "session": {"type": "realtime", "audio": {"output": {"voice": "ash", "speed": 1.1}}},
    }
    reply = httpx.post(broker.url + "/v1/realtime/client_secrets", json=body, headers=headers)
    assert reply.status_code == 200, reply.text
    assert set(reply.json()) == {"value", "expires_at", "session"}
    assert reply.json()["session"] == {"type": "realtime", "model": "gpt-4o-mini-realtime-preview"}
    [request] = upstream.received()
    assert request["path"] == path
    sent = json.loads(request["body"])
    assert list((BETA if dialect == "openai-beta" else GA).iter_errors(sent)) == []
    adjusted = reply.headers.get("policy-adjusted", "")
    if dialect == "openai-beta":  # named as the GA request has them
        assert set(adjusted.split(", ")) >= {"expires_after.seconds", "session.audio.output.speed"}
    else:
        assert sent["expires_after"]["seconds"] == 60
        assert sent["session"]["audio"]["output"]["speed"] == 1.1
