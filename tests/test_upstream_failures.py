"""Upstream failures as data: what each means for retries, the breaker, refunds and the
client; the retry loop; what a minted reply keeps."""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest

from tokenbroker.families.realtime.dialects import BETA, OPENAI
from tokenbroker.families.realtime.dialects.base import Minted
from tokenbroker.infra import fast_json
from tokenbroker.upstream.client import Connection, Upstream, UpstreamPolicy
from tokenbroker.upstream.failures import Failure, Kind, UpstreamError
from tokenbroker.upstream.retry import RetryPolicy, with_retries


@pytest.mark.parametrize(
    ("failure", "retryable", "unhealthy", "refundable", "status", "code"),
    [
        (Failure(Kind.UNREACHABLE), True, True, True, 502, "upstream_error"),
        (Failure(Kind.TIMEOUT), False, True, True, 504, "upstream_timeout"),
        (Failure(Kind.STATUS, 503), True, True, True, 502, "upstream_error"),
        (Failure(Kind.STATUS, 501), False, True, True, 502, "upstream_error"),
        (Failure(Kind.STATUS, 302), False, True, True, 502, "upstream_error"),
        (Failure(Kind.STATUS, 429, "7"), False, False, True, 503, "upstream_rate_limited"),
        (Failure(Kind.STATUS, 401), False, False, True, 502, "upstream_auth_failed"),
        (Failure(Kind.STATUS, 400), False, False, True, 502, "upstream_rejected"),
        (Failure(Kind.INVALID), False, False, False, 502, "upstream_invalid_response"),
        (Failure(Kind.OPEN_CIRCUIT), False, False, True, 502, "upstream_error"),
    ],
)
def test_what_a_failure_means(
    failure: Failure, retryable: bool, unhealthy: bool, refundable: bool, status: int, code: str
) -> None:
    """Each failure decides retry, breaker, refund and the client's error in one place."""
    assert (failure.retryable, failure.unhealthy, failure.refundable) == (
        retryable, unhealthy, refundable)  # fmt: skip
    error = failure.error()
    assert (error.status, error.code) == (status, code)


def test_retry_after_of_an_upstream_429_is_whole_seconds() -> None:
    """The upstream's Retry-After reaches the client rounded up, at least 1, or 1 if bogus."""
    assert Failure(Kind.STATUS, 429, "2.1").error().headers["Retry-After"] == "3"
    assert Failure(Kind.STATUS, 429, "0").error().headers["Retry-After"] == "1"
    assert Failure(Kind.STATUS, 429, "soon").error().headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("results", "retries", "calls", "last"),
    [
        ([Failure(Kind.UNREACHABLE)] * 5, 2, 3, Kind.UNREACHABLE),
        ([Failure(Kind.STATUS, 503), Failure(Kind.TIMEOUT)], 2, 2, Kind.TIMEOUT),
        ([Failure(Kind.STATUS, 400)], 2, 1, Kind.STATUS),
        ([Failure(Kind.UNREACHABLE), Minted("ek_x", 1)], 2, 2, None),
        ([Failure(Kind.UNREACHABLE)] * 5, 0, 1, Kind.UNREACHABLE),
    ],
)
async def test_retries_stop_at_the_count_or_a_final_answer(
    results: list[Minted | Failure], retries: int, calls: int, last: Kind | None
) -> None:
    """Retryable failures are tried again up to ``retries`` times; anything else ends it."""
    made: list[int] = []
    retried: list[int] = []

    async def attempt() -> Minted | Failure:
        made.append(1)
        return results[len(made) - 1]

    policy = RetryPolicy(retries=retries, backoff=0.001)
    result = await with_retries(attempt, policy, time.monotonic() + 10, lambda: retried.append(1))
    assert len(made) == calls and len(retried) == calls - 1
    assert (result.kind if isinstance(result, Failure) else None) is last


async def test_no_retry_past_the_deadline() -> None:
    """A pause that would end after the deadline is not taken: one attempt only."""
    calls: list[int] = []

    async def attempt() -> Minted | Failure:
        calls.append(1)
        return Failure(Kind.UNREACHABLE)

    await with_retries(attempt, RetryPolicy(retries=5, backoff=60), time.monotonic() + 0.001)
    assert len(calls) == 1


def test_a_minted_reply_keeps_its_session() -> None:
    """Besides the secret, the session id and the rest of the reply are kept for later
    steps, from either reply shape; a reply without a usable secret is an INVALID failure."""
    beta = {"id": "sess_1", "model": "m", "client_secret": {"value": "ek_1", "expires_at": 9}}
    minted = BETA.parse(json.dumps(beta).encode())
    assert minted == Minted("ek_1", 9, "sess_1", {"id": "sess_1", "model": "m"})
    ga = {"value": "ek_2", "expires_at": 8, "session": {"id": "sess_2", "type": "realtime"}}
    minted = OPENAI.parse(json.dumps(ga).encode())
    assert minted == Minted("ek_2", 8, "sess_2", {"id": "sess_2", "type": "realtime"})
    for bad in (b"{", b"[]", b'{"client_secret": {"value": "", "expires_at": 9}}',
                b'{"client_secret": {"value": "ek", "expires_at": true}}'):  # fmt: skip
        assert BETA.parse(bad) == Failure(Kind.INVALID)
    assert OPENAI.parse(b'{"value": "ek", "expires_at": "soon"}') == Failure(Kind.INVALID)


def test_json_past_64_bit_integers_both_ways() -> None:
    """The mint path writes JSON with orjson, which refuses integers past 64 bits; a
    function tool's free-form parameters may hold one, and so may an upstream reply: both
    go through exactly (no rounding to a float)."""
    huge = 2**70 + 1
    body = {"tools": [{"type": "function", "parameters": {"maximum": huge}}], "voice": "é"}
    assert json.loads(fast_json.dumps(body)) == body
    assert fast_json.dumps({"a": 1, "b": "é"}) == '{"a":1,"b":"é"}'.encode()
    reply = {"id": "s", "client_secret": {"value": "ek_1", "expires_at": 9}, "big": huge}
    minted = BETA.parse(json.dumps(reply).encode())
    assert isinstance(minted, Minted) and minted.session["big"] == huge


async def test_an_upstream_that_never_accepts() -> None:
    """A connection the upstream never takes (its accept queue is full, so the kernel
    drops our SYNs): past ``connect_timeout`` that is unreachable, and retried; when the
    mint's deadline ends first, it is a timeout, and not retried."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = [socket.socket() for _ in range(4)]  # fill the accept queue
    for filler in fillers:
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
    outcomes = []
    try:
        for deadline in (5.0, 0.1):
            retries = []
            upstream = Upstream(
                Connection(connect_timeout=0.2), f"http://127.0.0.1:{port}/v1", "sk-test",
                UpstreamPolicy(deadline=deadline, retries=1, backoff=0.01),
                on_retry=lambda: retries.append(1),  # noqa: B023 - used in this turn
            )  # fmt: skip
            try:
                with pytest.raises(UpstreamError) as raised:
                    await upstream.post("/realtime/client_secrets", {}, OPENAI.parse)
            finally:
                await upstream.close()
            outcomes.append((raised.value.failure.kind, len(retries)))
    finally:
        for sock in (*fillers, listener):
            sock.close()
    assert outcomes == [(Kind.UNREACHABLE, 1), (Kind.TIMEOUT, 0)]
