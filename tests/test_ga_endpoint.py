"""The GA endpoint, driven by the official openai SDK with the broker as its base URL and
the user's JWT as its key: typed objects back, the policy on every GA field, the SDK's
exception classes for errors, and the upstream body valid under the official schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from conftest import POLICIES, FakeUpstream, StartBroker, make_token
from servers import TokenbrokerServer
from test_dialects import GA

SECRETS = "/v1/realtime/client_secrets"


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker) -> TokenbrokerServer:
    return start_broker(policy_file=POLICIES / "ga.yaml", upstream={"dialect": "openai"})


@pytest.fixture
def client(broker: TokenbrokerServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=broker.url + "/v1", api_key=make_token("sdk-user"),
                       max_retries=0) as sdk:  # fmt: skip
        yield sdk


def sent(upstream: FakeUpstream) -> dict[str, Any]:
    [request] = upstream.received()
    body: dict[str, Any] = json.loads(request["body"])
    assert list(GA.iter_errors(body)) == []
    return body


def test_sdk_mints_a_ga_secret(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    """client.realtime.client_secrets.create() returns the SDK's typed object with an ek_
    secret; the reply holds value, expires_at and session {type, model} only; the policy
    fixed the instructions, forced tracing, clamped speed and set the secret's TTL."""
    raw = client.realtime.client_secrets.with_raw_response.create(
        session={"type": "realtime", "model": "gpt-realtime",
                 "audio": {"output": {"voice": "marin", "speed": 1.4}}},
    )  # fmt: skip
    secret = raw.parse()
    assert secret.value.startswith("ek_") and secret.session.type == "realtime"
    assert secret.session.model == "gpt-realtime"
    reply = json.loads(raw.http_response.text)
    assert set(reply) == {"value", "expires_at", "session"}
    assert reply["session"] == {"type": "realtime", "model": "gpt-realtime"}
    assert raw.headers["policy-adjusted"] == "session.audio.output.speed"
    body = sent(upstream)
    session = body["session"]
    assert session["instructions"] == "You are a helpful assistant."
    assert session["tracing"] == {"workflow_name": "tokenbroker"}
    pcm = {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"] == {"voice": "marin", "speed": 1.2, "format": pcm}
    assert body["expires_after"] == {"anchor": "created_at", "seconds": 120}


async def test_async_sdk_and_ttl_clamp(broker: TokenbrokerServer, upstream: FakeUpstream) -> None:
    """The async client works the same; a TTL over the policy's max is clamped and named."""
    async with openai.AsyncOpenAI(base_url=broker.url + "/v1", api_key=make_token("async-user"),
                                  max_retries=0) as sdk:  # fmt: skip
        raw = await sdk.realtime.client_secrets.with_raw_response.create(
            expires_after={"anchor": "created_at", "seconds": 7200},
            session={"type": "realtime", "output_modalities": ["text"]},
        )
    secret = raw.parse()
    assert secret.value.startswith("ek_")
    assert "expires_after.seconds" in raw.headers["policy-adjusted"]
    assert sent(upstream)["expires_after"]["seconds"] == 300


def test_transcription_sessions(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    """A transcription session is minted when the policy allows its type."""
    secret = client.realtime.client_secrets.create(
        session={"type": "transcription",
                 "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}},
    )  # fmt: skip
    assert secret.session.type == "transcription"
    assert sent(upstream)["session"]["type"] == "transcription"


def test_mcp_tools_from_listed_servers(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    """An MCP tool of a listed server or connector passes with the policy's approval
    setting forced; function tools still need a listed name."""
    client.realtime.client_secrets.create(session={"type": "realtime", "tools": [
        {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.allowed.example/sse",
         "require_approval": "never"},
        {"type": "mcp", "server_label": "mail", "connector_id": "connector_gmail"},
        {"type": "function", "name": "lookup", "parameters": {"type": "object"}},
    ]})  # fmt: skip
    tools = sent(upstream)["session"]["tools"]
    assert [t.get("require_approval") for t in tools] == ["always", "always", None]


def test_beta_sessions_through_the_sdk(client: openai.OpenAI, upstream: FakeUpstream) -> None:
    """The seed's endpoint, as the SDK's beta.realtime.sessions.create() calls it."""
    session = client.beta.realtime.sessions.create(model="gpt-realtime", voice="cedar")
    assert session.client_secret.value.startswith("ek_")
    assert sent(upstream)["session"]["audio"]["output"]["voice"] == "cedar"


SEED_FIELD_REFUSALS = {"model_not_allowed", "voice_not_allowed", "instructions_not_allowed",
                       "input_audio_format_not_allowed", "transcription_not_allowed"}  # fmt: skip


@pytest.mark.parametrize(
    ("plan", "request_", "error", "code", "param"),
    [
        ("ga", {"session": {"type": "realtime", "speeed": 1}}, openai.BadRequestError,
         "unknown_parameter", "session.speeed"),
        ("ga", {"expires_after": {"anchor": "created_at", "seconds": 5}},
         openai.BadRequestError, "invalid_value", "expires_after.seconds"),
        ("ga", {"session": {"type": "realtime", "model": "gpt-4o-realtime-preview"}},
         openai.PermissionDeniedError, "model_not_allowed", "session.model"),
        ("ga", {"session": {"type": "realtime", "audio": {"output": {"voice": "ash"}}}},
         openai.PermissionDeniedError, "voice_not_allowed", "session.audio.output.voice"),
        ("ga", {"session": {"type": "realtime", "audio": {"input": {"format":
                            {"type": "audio/pcma"}}}}},
         openai.PermissionDeniedError, "input_audio_format_not_allowed",
         "session.audio.input.format"),
        ("ga", {"session": {"type": "realtime", "audio": {"input": {"transcription":
                            {"model": "gpt-4o-mini-transcribe"}}}}},
         openai.PermissionDeniedError, "transcription_not_allowed",
         "session.audio.input.transcription.model"),
        ("ga", {"session": {"type": "realtime", "instructions": "Be rude."}},
         openai.PermissionDeniedError, "instructions_not_allowed", "session.instructions"),
        ("ga", {"session": {"type": "realtime", "reasoning": {"effort": "high"}}},
         openai.PermissionDeniedError, "reasoning_not_allowed", "session.reasoning.effort"),
        ("ga", {"session": {"type": "realtime", "prompt": {"id": "pmpt_other"}}},
         openai.PermissionDeniedError, "prompt_not_allowed", "session.prompt.id"),
        ("ga", {"session": {"type": "realtime", "truncation": "disabled"}},
         openai.PermissionDeniedError, "truncation_not_allowed", "session.truncation"),
        ("ga", {"session": {"type": "realtime", "include":
                            ["item.input_audio_transcription.logprobs"]}},
         openai.PermissionDeniedError, "include_not_allowed", "session.include"),
        ("ga", {"session": {"type": "realtime", "tools": [{"type": "mcp", "server_label": "x",
                            "server_url": "https://mcp.example/sse"}]}},
         openai.PermissionDeniedError, "tools_not_allowed", "session.tools[0]"),
        ("strict", {"session": {"type": "transcription"}}, openai.PermissionDeniedError,
         "session_type_not_allowed", "session.type"),
        ("strict", {"session": {"type": "realtime", "tracing": "auto"}},
         openai.PermissionDeniedError, "tracing_not_allowed", "session.tracing"),
    ],
)  # fmt: skip
def test_refusals_are_the_sdks_exceptions(
    broker: TokenbrokerServer,
    upstream: FakeUpstream,
    plan: str,
    request_: dict[str, Any],
    error: type[openai.APIStatusError],
    code: str,
    param: str,
) -> None:
    """Bad input and policy refusals reach the SDK as its exception classes, with the error
    code and the param as the GA request has the field (its message quotes the same
    path); nothing reaches the upstream."""
    token = make_token("refused", plan=plan)
    with (
        openai.OpenAI(base_url=broker.url + "/v1", api_key=token, max_retries=0) as sdk,
        pytest.raises(error) as caught,
    ):
        sdk.realtime.client_secrets.create(**request_)
    assert (caught.value.code, caught.value.param) == (code, param)
    if code in SEED_FIELD_REFUSALS:  # the message names the field the same way
        assert f"'{param}'" in caught.value.message, caught.value.message
    assert upstream.received() == []


def test_allowed_tracing_and_bad_tokens(broker: TokenbrokerServer, upstream: FakeUpstream) -> None:
    """tracing passes when the policy allows it; a bad JWT is the SDK's AuthenticationError."""
    with openai.OpenAI(base_url=broker.url + "/v1", max_retries=0,
                       api_key=make_token("tracer", plan="open_tracing")) as sdk:  # fmt: skip
        sdk.realtime.client_secrets.create(session={"type": "realtime", "tracing": "auto"})
    assert sent(upstream)["session"]["tracing"] == "auto"
    with (
        openai.OpenAI(base_url=broker.url + "/v1", api_key="not-a-jwt", max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        sdk.realtime.client_secrets.create(session={"type": "realtime"})
    assert caught.value.code == "invalid_token"


@pytest.mark.parametrize(
    "body",
    [b"[]", b'"x"', b'{"session": 5}', b'{"expires_after": {"seconds": "x"}}',
     b'{"session": {"type": "realtime", "audio": {"output": {"voice": {}}}}}',
     b'{"session": {"type": "realtime", "temperature": NaN}}', b'{"session": {}, "session": {}}',
     b'{"session": {"type": ["realtime"]}}', b"{" * 5000, b'{"session": {"type": "moon"}}',
     b'{"expires_after": {"seconds": 1' + b"0" * 4000 + b"}}"],
)  # fmt: skip
def test_bad_input_is_a_400_never_a_500(
    broker: TokenbrokerServer, upstream: FakeUpstream, body: bytes
) -> None:
    """Malformed or out-of-schema GA bodies get the error envelope with a 400."""
    headers = {"Authorization": f"Bearer {make_token('fuzz')}", "Content-Type": "application/json"}
    reply = httpx.post(broker.url + SECRETS, content=body, headers=headers)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert upstream.received() == []


def test_policy_file_for_every_dialect() -> None:
    """The GA policy file is valid for GA dialects; for the beta dialect its GA model names
    are errors by path."""
    from tokenbroker.families import vocabulary
    from tokenbroker.families.realtime.rules import rules_of
    from tokenbroker.policy.model import PolicyError
    from tokenbroker.policy.parse import parse_policy_text

    text = Path(POLICIES / "ga.yaml").read_text()
    for dialect in ("openai", "azure"):
        assert (
            rules_of(parse_policy_text(text, vocabulary(dialect)).policies["ga"]).speed is not None
        )
    with pytest.raises(PolicyError) as caught:
        parse_policy_text(text, vocabulary("openai-beta"))
    assert caught.value.errors[0].startswith("policies.ga.models[0]: unknown model 'gpt-realtime'")
