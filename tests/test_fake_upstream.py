"""The fake upstream behaves like the reference endpoint it stands in for."""

from __future__ import annotations

import time

import httpx
import pytest

from conftest import API_KEY, FakeUpstream


def post(upstream: FakeUpstream, body: object, key: str | None = API_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(f"{upstream.url}/realtime/sessions", json=body, headers=headers)


def test_returns_an_ephemeral_secret(upstream: FakeUpstream) -> None:
    """A valid request gets a session object with an ek_ secret expiring in 60 s."""
    reply = post(upstream, {"model": "gpt-4o-mini-realtime-preview", "voice": "ash"})
    assert reply.status_code == 200
    body = reply.json()
    assert body["object"] == "realtime.session"
    assert body["voice"] == "ash"
    assert body["client_secret"]["value"].startswith("ek_")
    assert abs(body["client_secret"]["expires_at"] - (time.time() + 60)) < 5


@pytest.mark.parametrize(
    ("key", "code"), [(None, "missing_api_key"), ("sk-wrong", "invalid_api_key")]
)
def test_401_without_the_key(upstream: FakeUpstream, key: str | None, code: str) -> None:
    """No bearer key, or the wrong one, is refused like the real API does."""
    reply = post(upstream, {}, key=key)
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"colour": 1}, "unknown_parameter", "colour"),
        ({"temperature": 2.0}, "invalid_value", "temperature"),
        ({"modalities": "audio"}, "invalid_type", "modalities"),
        ({"tools": [{"type": "function", "name": 3}]}, "invalid_type", "tools[0].name"),
        ({"turn_detection": {"type": "fast_vad"}}, "invalid_value", "turn_detection.type"),
        ({"max_response_output_tokens": 0}, "invalid_value", "max_response_output_tokens"),
    ],
)
def test_400_for_what_the_reference_refuses(
    upstream: FakeUpstream, body: dict[str, object], code: str, param: str
) -> None:
    """Unknown fields, wrong types and out-of-range values get OpenAI's 400 error shape."""
    reply = post(upstream, body)
    assert reply.status_code == 400
    assert reply.json()["error"] == {
        "type": "invalid_request_error",
        "code": code,
        "param": param,
        "message": reply.json()["error"]["message"],
    }


def test_latency_and_faults_are_injectable(upstream: FakeUpstream) -> None:
    """Queued faults are served one per request, then it is healthy again."""
    upstream.control(faults=["503", "no_secret"])
    assert post(upstream, {}).status_code == 503
    assert "client_secret" not in post(upstream, {}).json()
    assert post(upstream, {}).status_code == 200


def test_recording_can_be_switched_at_run_time(upstream: FakeUpstream) -> None:
    """Off, requests are answered but not kept (the benchmark's mode); on again, kept."""
    upstream.control(record=False)
    assert post(upstream, {"voice": "ash"}).status_code == 200
    assert upstream.received() == []
    upstream.control(record=True)
    assert post(upstream, {"voice": "alloy"}).status_code == 200
    assert [r["body"] for r in upstream.received()] == ['{"voice":"alloy"}']
