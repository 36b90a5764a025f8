"""The whole mint path against real processes: broker, fake upstream and redis-server."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import API_KEY, JWT_SECRET, FakeUpstream, StartBroker, make_token
from servers import RedisServer, TokenbrokerServer, free_port

SESSIONS = "/v1/realtime/sessions"


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


def mint(
    broker: TokenbrokerServer,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    sent = {"Content-Type": "application/json"}
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    sent.update(headers or {})
    if content is None:
        content = b"" if body is None else json.dumps(body).encode()
    return httpx.post(broker.url + SESSIONS, content=content, headers=sent, timeout=10)


def assert_error(
    response: httpx.Response, status: int, code: str, param: str | None = None
) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["param"] == param
    assert set(error) == {"type", "code", "message", "param"}
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-request-id"]


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker) -> TokenbrokerServer:
    return start_broker()


class TestGoodMint:
    def test_reply_is_exactly_the_secret_and_model(
        self, broker: TokenbrokerServer, upstream: FakeUpstream
    ) -> None:
        """A good mint returns only client_secret and model, with the README's reply headers."""
        response = mint(broker, {"voice": "ash"}, token=make_token(new_user()))
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"client_secret", "model"}
        assert body["model"] == "gpt-4o-mini-realtime-preview"
        assert body["client_secret"]["value"].startswith("ek_")
        assert body["client_secret"]["expires_at"] > time.time()
        for name, value in {
            "cache-control": "no-store",
            "pragma": "no-cache",
            "x-content-type-options": "nosniff",
        }.items():
            assert response.headers[name] == value
        assert response.headers["ratelimit-policy"] == '"user-1000-per-1m";q=1000;w=60'
        assert response.headers["ratelimit"].startswith('"user-1000-per-1m";r=999;t=')
        assert "policy-adjusted" not in response.headers

    def test_upstream_receives_the_key_and_the_enforced_config(
        self, broker: TokenbrokerServer, upstream: FakeUpstream
    ) -> None:
        """The upstream gets the real API key and the policy-enforced config, clamps applied."""
        response = mint(
            broker,
            {"temperature": 1.1, "max_response_output_tokens": "inf"},
            token=make_token(new_user()),
        )
        assert response.status_code == 200, response.text
        assert response.headers["policy-adjusted"] == "temperature, max_response_output_tokens"
        [received] = upstream.received()
        assert received["authorization"] == f"Bearer {API_KEY}"
        assert json.loads(received["body"]) == {
            "model": "gpt-4o-mini-realtime-preview",
            "modalities": ["audio", "text"],
            "voice": "alloy",
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "instructions": "You are a helpful assistant.",
            "temperature": 0.9,
            "max_response_output_tokens": 1024,
        }

    def test_empty_body_means_policy_defaults(
        self, broker: TokenbrokerServer, upstream: FakeUpstream
    ) -> None:
        """No body at all is the same as {}: every field takes its policy default."""
        response = mint(broker, token=make_token(new_user()), headers={"Content-Type": ""})
        assert response.status_code == 200, response.text
        assert json.loads(upstream.received()[0]["body"])["temperature"] == 0.8

    def test_sane_request_id_is_echoed_and_insane_replaced(
        self, broker: TokenbrokerServer, upstream: FakeUpstream
    ) -> None:
        """A caller's sane X-Request-ID comes back; a hostile one is replaced."""
        token = make_token(new_user())
        sane = mint(broker, {}, token=token, headers={"X-Request-ID": "req-123.abc"})
        assert sane.headers["x-request-id"] == "req-123.abc"
        insane = mint(broker, {}, token=token, headers={"X-Request-ID": "a b\t<script>" * 20})
        assert insane.headers["x-request-id"] != "a b\t<script>" * 20
        assert len(insane.headers["x-request-id"]) == 32

    def test_policy_claim_selects_the_policy(
        self, broker: TokenbrokerServer, upstream: FakeUpstream
    ) -> None:
        """The JWT claim named by policy_claim picks a policy: suspended → 403."""
        response = mint(broker, {}, token=make_token(new_user(), plan="suspended"))
        assert_error(response, 403, "policy_disabled")
        assert upstream.received() == []


class TestRequestErrors:
    @pytest.mark.parametrize(
        ("content", "status", "code", "param"),
        [
            (b"{not json", 400, "invalid_json", None),
            (b'{"temperature": NaN}', 400, "invalid_json", None),
            (b'{"voice": "ash", "voice": "alloy"}', 400, "invalid_json", None),
            (b"[1, 2]", 400, "invalid_type", None),
            (b'{"colour": "red"}', 400, "unknown_parameter", "colour"),
            (b'{"temperature": "hot"}', 400, "invalid_type", "temperature"),
            (b'{"temperature": 1.5}', 400, "invalid_value", "temperature"),
            (
                b'{"max_response_output_tokens": 5000}',
                400,
                "invalid_value",
                "max_response_output_tokens",
            ),
            (
                b'{"turn_detection": {"threshold": 2}}',
                400,
                "invalid_value",
                "turn_detection.threshold",
            ),
            (b'{"model": "gpt-4o-realtime-preview"}', 403, "model_not_allowed", "model"),
            (b'{"voice": "verse"}', 403, "voice_not_allowed", "voice"),
            (b'{"modalities": ["audio"]}', 403, "modalities_not_allowed", "modalities"),
            (
                b'{"input_audio_format": "g711_ulaw"}',
                403,
                "input_audio_format_not_allowed",
                "input_audio_format",
            ),
            (
                b'{"output_audio_format": "g711_alaw"}',
                403,
                "output_audio_format_not_allowed",
                "output_audio_format",
            ),
            (b'{"instructions": "Be evil."}', 403, "instructions_not_allowed", "instructions"),
            (b'{"tools": [{"type": "function", "name": "x"}]}', 403, "tools_not_allowed", "tools"),
            (
                b'{"input_audio_transcription": {"model": "whisper-1"}}',
                403,
                "transcription_not_allowed",
                "input_audio_transcription",
            ),
        ],
    )
    def test_bad_bodies_get_the_right_error_and_never_reach_upstream(
        self,
        broker: TokenbrokerServer,
        upstream: FakeUpstream,
        content: bytes,
        status: int,
        code: str,
        param: str | None,
    ) -> None:
        """Each malformed or disallowed body gets its status, code and param; upstream untouched."""
        response = mint(broker, token=make_token(new_user()), content=content)
        assert_error(response, status, code, param)
        assert upstream.received() == []

    def test_body_too_large(self, broker: TokenbrokerServer, upstream: FakeUpstream) -> None:
        """Bodies over 64 KiB get 413 before any parsing."""
        content = json.dumps({"instructions": "x" * 70_000}).encode()
        assert_error(
            mint(broker, token=make_token(new_user()), content=content), 413, "body_too_large"
        )

    @pytest.mark.parametrize(("size", "status"), [(100, 200), (70_000, 413)])
    def test_chunked_body_is_read_whole_and_capped(
        self, broker: TokenbrokerServer, upstream: FakeUpstream, size: int, status: int
    ) -> None:
        """A body without Content-Length arrives in pieces: read whole, or 413 past 64 KiB."""
        body = b'{"voice": "ash"' + b" " * size + b"}"  # JSON allows the padding

        def pieces() -> Iterator[bytes]:
            for at in range(0, len(body), 4096):
                yield body[at : at + 4096]

        response = httpx.post(
            broker.url + SESSIONS,
            content=pieces(),
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {make_token(new_user())}"},
            timeout=10,
        )  # fmt: skip
        assert "content-length" not in response.request.headers
        if status == 200:
            assert response.status_code == 200, response.text
            assert json.loads(upstream.received()[-1]["body"])["voice"] == "ash"
        else:
            assert_error(response, 413, "body_too_large")

    def test_client_leaving_mid_body_is_logged_not_an_error(
        self, broker: TokenbrokerServer, upstream: FakeUpstream
    ) -> None:
        """A client that hangs up before its body arrives: one log line with status 499 and
        outcome client_disconnected, no traceback, no call upstream."""
        request_id = f"gone-{uuid.uuid4().hex}"
        with socket.create_connection(("127.0.0.1", broker.port)) as conn:
            conn.sendall(
                f"POST {SESSIONS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: 100\r\nX-Request-ID: {request_id}\r\n\r\n{{".encode()
            )
        line = json.loads(broker.process.wait_for(rf'^{{.*"{request_id}".*$').group(0))
        assert (line["status"], line["outcome"]) == (499, "client_disconnected")
        assert "unhandled error" not in broker.logs()
        assert upstream.received() == []

    def test_wrong_media_type(self, broker: TokenbrokerServer, upstream: FakeUpstream) -> None:
        """Only application/json bodies are read."""
        response = mint(
            broker,
            token=make_token(new_user()),
            content=b"voice=ash",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert_error(response, 415, "unsupported_media_type")

    @pytest.mark.parametrize("media", ["text/plain", "application/x-www-form-urlencoded"])
    def test_an_empty_body_means_defaults_whatever_its_type(
        self, broker: TokenbrokerServer, upstream: FakeUpstream, media: str
    ) -> None:
        """An empty body is "all policy defaults"; only a non-empty body must be JSON."""
        response = mint(broker, token=make_token(new_user()), content=b"",
                        headers={"Content-Type": media})  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.json()["model"]

    def test_unknown_path_and_method(self, broker: TokenbrokerServer) -> None:
        """404 and 405 use the same JSON envelope."""
        assert_error(httpx.get(broker.url + "/nope"), 404, "not_found")
        assert_error(httpx.get(broker.url + SESSIONS), 405, "method_not_allowed")


class TestAuthentication:
    def test_missing_token(self, broker: TokenbrokerServer, upstream: FakeUpstream) -> None:
        """No Authorization: 401 missing_token with a bare Bearer challenge (RFC 6750)."""
        response = mint(broker, {})
        assert_error(response, 401, "missing_token")
        assert response.headers["www-authenticate"] == 'Bearer realm="tokenbroker"'

    @pytest.mark.parametrize(
        ("token", "code"),
        [
            ("not.a.jwt", "invalid_token"),
            (make_token("u", secret="another-secret-of-sufficient-length-000"), "invalid_token"),
            (make_token("u", ttl=-3600), "token_expired"),
            (make_token("u", aud="someone-else"), "invalid_token"),
            (
                make_token(
                    "",
                ),
                "invalid_token",
            ),
        ],
    )
    def test_bad_tokens(
        self, broker: TokenbrokerServer, upstream: FakeUpstream, token: str, code: str
    ) -> None:
        """Bad signature, expiry, audience or user id: 401 with an invalid_token challenge."""
        response = mint(broker, {}, token=token)
        assert_error(response, 401, code)
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert upstream.received() == []

    def test_malformed_authorization_header(self, broker: TokenbrokerServer) -> None:
        """A Bearer header whose token is not one token is a 400 invalid_request."""
        response = mint(broker, {}, headers={"Authorization": "Bearer two tokens"})
        assert_error(response, 400, "invalid_request")


class TestRateLimit:
    def test_n_allowed_then_429_with_retry_after(
        self, broker: TokenbrokerServer, upstream: FakeUpstream
    ) -> None:
        """The limited policy (3 per minute) admits 3 mints, then 429 with Retry-After."""
        token = make_token(new_user(), plan="limited")
        statuses = [mint(broker, {}, token=token).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        denied = mint(broker, {}, token=token)
        assert_error(denied, 429, "rate_limit_exceeded")
        assert 1 <= int(denied.headers["retry-after"]) <= 20
        assert denied.headers["ratelimit"].startswith('"user-3-per-1m";r=0;')
        assert len(upstream.received()) == 3

    def test_failed_upstream_refunds_the_charge(
        self, broker: TokenbrokerServer, upstream: FakeUpstream
    ) -> None:
        """A mint that fails upstream (500) does not use up the user's limit."""
        token = make_token(new_user(), plan="limited")
        upstream.control(faults=["500"] * 9)  # three attempts per mint
        assert [mint(broker, {}, token=token).status_code for _ in range(3)] == [502] * 3
        assert [mint(broker, {}, token=token).status_code for _ in range(3)] == [200] * 3


class TestUpstreamFailures:
    @pytest.mark.parametrize(
        ("fault", "status", "code"),
        [
            ("500,500,500", 502, "upstream_error"),
            ("400", 502, "upstream_rejected"),
            ("401", 502, "upstream_auth_failed"),
            ("invalid_json", 502, "upstream_invalid_response"),
            ("no_secret", 502, "upstream_invalid_response"),
            ("429", 503, "upstream_rate_limited"),
            ("hang", 504, "upstream_timeout"),
            ("307", 502, "upstream_error"),  # redirects are not followed (the key stays put)
        ],
    )
    def test_each_fault_maps_to_its_status(
        self,
        broker: TokenbrokerServer,
        upstream: FakeUpstream,
        fault: str,
        status: int,
        code: str,
    ) -> None:
        """Upstream faults become the documented statuses; nothing from upstream leaks."""
        upstream.control(faults=fault.split(","))
        response = mint(broker, {}, token=make_token(new_user()))
        assert_error(response, status, code)
        if fault == "429":
            assert response.headers["retry-after"] == "7"

    def test_unreachable_upstream(self, start_broker: StartBroker) -> None:
        """Nothing listening upstream: 502 upstream_error, quickly."""
        dead = start_broker(upstream={"url": f"http://127.0.0.1:{free_port()}/v1"})
        assert_error(mint(dead, {}, token=make_token(new_user())), 502, "upstream_error")


class TestStore:
    def test_redis_down_fails_closed(
        self,
        start_broker: StartBroker,
        tmp_path_factory: pytest.TempPathFactory,
        upstream: FakeUpstream,
    ) -> None:
        """With Redis gone, fail_mode closed answers 503 store_unavailable and readyz says so."""
        redis = RedisServer(tmp_path_factory.mktemp("redis-down"))
        redis.start()
        broker = start_broker(redis={"url": redis.url})
        token = make_token(new_user())
        assert mint(broker, {}, token=token).status_code == 200
        redis.stop()
        response = mint(broker, {}, token=token)
        assert_error(response, 503, "store_unavailable")
        assert response.headers["retry-after"] == "1"
        ready = httpx.get(broker.url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason"] == "rate-limit store unreachable"
        assert httpx.get(broker.url + "/healthz").status_code == 200


class TestHealth:
    def test_health_and_readiness(self, broker: TokenbrokerServer) -> None:
        """/healthz answers; /readyz is ready once policies are loaded and Redis answers."""
        assert httpx.get(broker.url + "/healthz").json() == {"status": "ok"}
        ready = httpx.get(broker.url + "/readyz")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        assert ready.json()["policy_version"] >= 1


class TestCors:
    def test_allowed_origin_preflight(self, broker: TokenbrokerServer) -> None:
        """A preflight from an allowed origin may send Authorization and Content-Type."""
        response = httpx.options(
            broker.url + SESSIONS,
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        assert "authorization" in response.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in response.headers

    def test_other_origin_gets_no_cors_headers(
        self, broker: TokenbrokerServer, upstream: FakeUpstream
    ) -> None:
        """A request from an origin not in the allowlist carries no CORS grant."""
        response = mint(
            broker, {}, token=make_token(new_user()), headers={"Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in response.headers


def test_no_secret_reaches_the_logs(broker: TokenbrokerServer, upstream: FakeUpstream) -> None:
    """After good and bad requests, the logs hold no API key, JWT or client secret."""
    tokens = [make_token(new_user()) for _ in range(3)]
    secrets = [API_KEY, JWT_SECRET, *tokens]
    for token in tokens:
        reply = mint(broker, {}, token=token)
        secrets.append(reply.json()["client_secret"]["value"])
        mint(broker, {"instructions": "x"}, token=token)
        mint(broker, {}, token=token + "tampered")
    upstream.control(faults=["500"])
    mint(broker, {}, token=tokens[0])
    logs = broker.logs()
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert sum(line.get("outcome") == "minted" for line in lines) >= 3
    for secret in secrets:
        assert secret not in logs
        assert secret[: len(secret) // 2] not in logs
