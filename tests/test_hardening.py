"""Defects an adversarial run found, each a class of inputs, each tested over many of them
through a real broker: no 500, the error envelope, nothing sent upstream, no allowance lost."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import JWT_SECRET, FakeUpstream, StartBroker, make_token
from servers import TokenbrokerServer
from test_auth import claims, forge

JSON = {"Content-Type": "application/json"}
HUGE = [10**4000, -(10**4000), 2**64, 10**20, -(2**63)]


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker) -> TokenbrokerServer:
    return start_broker(env={"TOKENBROKER_ADMIN_TOKEN": "admin-ü-token-0123456789"})


def post(broker: TokenbrokerServer, path: str, body: bytes, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return httpx.post(broker.url + path, content=body, headers=headers, timeout=10)


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize(
    "value", [*HUGE, 10**309], ids=["1e4000", "-1e4000", "2^64", "1e20", "-2^63", "1e309"]
)
def test_huge_time_claims_are_401_not_500(
    broker: TokenbrokerServer, upstream: FakeUpstream, claim: str, value: int
) -> None:
    """A time claim too large for a float, with a garbage signature: 401 invalid_token
    (the date is read before any key is used), never a 500 or a traceback."""
    payload = json.dumps(claims()).rstrip("}") + f', "{claim}": {value}}}'
    good = forge({"alg": "HS256"}, payload, alg="HS256")
    token = good.rsplit(".", 1)[0] + "." + base64.urlsafe_b64encode(b"x" * 32).decode().strip("=")
    reply = post(broker, "/v1/realtime/sessions", b"{}", token)
    assert (reply.status_code, reply.json()["error"]["code"]) == (401, "invalid_token")
    assert "Traceback" not in broker.logs()
    assert upstream.received() == []


SEED_NUMBERS = ["temperature", "max_response_output_tokens"]
SEED_NESTED = ["threshold", "prefix_padding_ms", "silence_duration_ms"]


def seed_bodies() -> Iterator[tuple[str, bytes, str]]:
    """(name, body, param): huge numbers in every numeric field of the seed's session."""
    for field in SEED_NUMBERS:
        for value in HUGE[:3]:
            yield f"{field}={str(value)[:5]}", f'{{"{field}": {value}}}'.encode(), field
        yield f"{field}=1e400", f'{{"{field}": 1e400}}'.encode(), field
    for field in SEED_NESTED:
        for value in HUGE[:3]:
            body = f'{{"turn_detection": {{"type": "server_vad", "{field}": {value}}}}}'
            yield f"turn_detection.{field}", body.encode(), f"turn_detection.{field}"


@pytest.mark.parametrize(("name", "body", "param"), list(seed_bodies()),
                         ids=[n for n, _, _ in seed_bodies()])  # fmt: skip
def test_huge_numbers_in_the_body_are_400(
    broker: TokenbrokerServer, upstream: FakeUpstream, name: str, body: bytes, param: str
) -> None:
    """A number no upstream range allows, in any numeric field, is 400 invalid_value with
    its param; nothing is forwarded."""
    reply = post(broker, "/v1/realtime/sessions", body, make_token(f"huge-{name}"))
    assert reply.status_code == 400, reply.text
    assert (reply.json()["error"]["code"], reply.json()["error"]["param"]) == (
        "invalid_value", param)  # fmt: skip
    assert upstream.received() == []


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/realtime/sessions", {"instructions": "a\ud800b"}, "instructions"),
        ("/v1/realtime/sessions", {"voice": "\udfff"}, "voice"),
        ("/v1/realtime/sessions", {"tools": [{"type": "function", "name": "x\ud83d"}]},
         "tools[0].name"),
        ("/v1/realtime/client_secrets", {"session": {"type": "realtime", "instructions":
                                                     "\udc00"}}, "session.instructions"),
        ("/v1/realtime/client_secrets", {"session": {"type": "realtime", "audio": {"output":
                                         {"voice": "\ud800"}}}}, "session.audio.output.voice"),
        ("/v1/realtime/client_secrets", {"expires_after": {"seconds": 10**30}},
         "expires_after.seconds"),
    ],
)  # fmt: skip
def test_strings_must_be_unicode_and_numbers_bounded(
    broker: TokenbrokerServer, upstream: FakeUpstream, path: str, body: Any, param: str
) -> None:
    """Lone surrogates (valid JSON escapes, not Unicode) and unbounded numbers are refused
    on both endpoints with their param."""
    raw = json.dumps(body).encode()  # json escapes the surrogate as \\udXXX
    reply = post(broker, path, raw, make_token("unicode"))
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param
    assert upstream.received() == []


class TestAdminCredential:
    def test_a_utf8_admin_token_is_accepted(self, broker: TokenbrokerServer) -> None:
        """The admin token is compared as the bytes sent (UTF-8), not as latin-1."""
        token = "Bearer admin-ü-token-0123456789".encode()
        reply = httpx.get(broker.url + "/admin/policy", headers=[(b"authorization", token)])
        assert reply.status_code == 200, reply.text

    def test_duplicate_authorization_is_refused(self, broker: TokenbrokerServer) -> None:
        """Two Authorization headers on the admin API: 400, as on the mint endpoint."""
        token = "Bearer admin-ü-token-0123456789".encode()
        twice = [(b"authorization", token), (b"authorization", b"Bearer x")]
        reply = httpx.get(broker.url + "/admin/policy", headers=twice)
        assert (reply.status_code, reply.json()["error"]["code"]) == (400, "invalid_request")


def test_forge_still_signs_with_the_test_secret() -> None:
    """The helper above relies on the shared test secret (sanity of the fixture)."""
    assert JWT_SECRET and forge({"alg": "HS256"}, claims()).count(".") == 2


def test_the_token_cache_stays_in_budget_in_a_broker(
    start_broker: StartBroker, upstream: FakeUpstream
) -> None:
    """Through a broker process: 2 000 distinct tokens with many small claims each and a
    4 MiB cache budget. The first 200 fill the budget; the next 1 800 replace entries and
    the process stays flat. Counting an entry as twice the token plus 1 KiB (4x too little
    for such tokens), it went on growing by ~7 MiB."""
    from test_edge_bounds import rss_kib

    broker = start_broker(auth={"verified_cache_bytes": 4 * 1024 * 1024})
    padding = {f"c{i}": i for i in range(400)}  # many small claims: small token, big dict
    tokens = [forge({"alg": "HS256"}, claims(sub=f"many-{i}", **padding)) for i in range(2000)]
    with httpx.Client(timeout=10) as client:  # one warm-up round: allocator pools settle
        for token in tokens[:200]:
            client.post(broker.url + "/v1/realtime/sessions", content=b"{}",
                        headers={"Authorization": f"Bearer {token}", **JSON})  # fmt: skip
        before = rss_kib(broker)
        for token in tokens[200:]:
            reply = client.post(broker.url + "/v1/realtime/sessions", content=b"{}",
                                headers={"Authorization": f"Bearer {token}", **JSON})  # fmt: skip
            assert reply.status_code == 200
    assert rss_kib(broker) - before < 3 * 1024  # KiB: full after the warm-up, then flat
