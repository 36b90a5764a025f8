"""Property-based fuzzing against a running broker: request bodies, headers and tokens.

Whatever arrives, the broker answers: no 500, every error in the error envelope, and an
invalid request never reaches the upstream. Bounded for the suite (TOKENBROKER_FUZZ_EXAMPLES
raises the count for a longer run, e.g. beside the benchmark).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import string
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FakeUpstream, StartBroker, make_token
from servers import TokenbrokerServer

EXAMPLES = int(os.environ.get("TOKENBROKER_FUZZ_EXAMPLES", "120"))
FIELDS = ["model", "modalities", "instructions", "voice", "input_audio_format",
          "output_audio_format", "input_audio_transcription", "turn_detection",
          "input_audio_noise_reduction", "tools", "tool_choice", "temperature",
          "max_response_output_tokens", "session", "expires_after", "type", "audio",
          "speed"]  # fmt: skip
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["pcm16", "audio/pcm", "server_vad", "inf", "ash", "realtime", "\ud800"]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8),
                                            inner, max_size=4)),
    max_leaves=12,
)  # fmt: skip
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=5).map(
        lambda d: json.dumps(d).encode()
    ),
    values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.sampled_from([b"", b"{", b'{"a":1,"a":2}', b"[NaN]", b'{"temperature": 1e999}',
                     b"\xff\xfe", b'{"x": "\\ud800"}', b"{" * 3000, b"[" * 5000]),
)  # fmt: skip
header_text = st.text(alphabet=string.printable.strip("\r\n\x0b\x0c"), max_size=60)


@pytest.fixture(scope="module")
def broker(start_broker: StartBroker) -> TokenbrokerServer:
    return start_broker(upstream={"dialect": "openai-beta"})


def upstream_count(upstream: FakeUpstream) -> int:
    count: int = httpx.get(f"{upstream.server.url}/_fake/requests").json()["count"]
    return count


def check(reply: httpx.Response) -> None:
    assert reply.status_code < 500, reply.text
    if reply.status_code >= 400:
        error = reply.json()["error"]
        assert set(error) == {"type", "code", "message", "param"}
        assert isinstance(error["message"], str) and error["message"]


@FUZZ
@given(path=st.sampled_from(["/v1/realtime/sessions", "/v1/realtime/client_secrets"]),
       body=bodies, content_type=st.sampled_from(["application/json", "text/plain", "",
                                                   "application/json; charset=utf-8"]))  # fmt: skip
def test_bodies(
    broker: TokenbrokerServer, upstream: FakeUpstream, path: str, body: bytes, content_type: str
) -> None:
    """Any body on either endpoint: an answer, never a 500; a refused one asks nothing of
    the upstream."""
    before = upstream_count(upstream)
    headers = {"Authorization": f"Bearer {make_token('fuzz-body')}"}
    if content_type:
        headers["Content-Type"] = content_type
    reply = httpx.post(broker.url + path, content=body, headers=headers, timeout=10)
    check(reply)
    if reply.status_code != 200:
        assert upstream_count(upstream) == before


def mutate(token: str, cut: int, insert: str) -> str:
    at = cut % (len(token) + 1)
    return token[:at] + insert + token[at + 1 :]


@FUZZ
@given(cut=st.integers(min_value=0, max_value=400), insert=header_text,
       scheme=st.sampled_from(["Bearer ", "bearer ", "Basic ", "", "Bearer  "]),
       extra=st.dictionaries(st.sampled_from(["X-Request-ID", "Origin", "Content-Length",
                                              "Authorization", "Host", "Expect"]),
                             header_text, max_size=2))  # fmt: skip
def test_tokens_and_headers(
    broker: TokenbrokerServer,
    upstream: FakeUpstream,
    cut: int,
    insert: str,
    scheme: str,
    extra: dict[str, Any],
) -> None:
    """Mangled tokens and odd headers: 4xx in the envelope (or a mint, when the mangling
    left a valid request), never a 500, and no upstream call for a refused one."""
    before = upstream_count(upstream)
    token = mutate(make_token("fuzz-token"), cut, insert)
    headers = {"Authorization": scheme + token, "Content-Type": "application/json", **extra}
    try:
        reply = httpx.post(broker.url + "/v1/realtime/sessions", content=b"{}",
                           headers=headers, timeout=10)  # fmt: skip
    except httpx.LocalProtocolError:
        return  # the client itself refuses to send such a header: nothing to test
    check(reply)
    if reply.status_code != 200:
        assert upstream_count(upstream) == before


def exchange(broker: TokenbrokerServer, data: bytes, limit: float = 5.0) -> tuple[bytes, bool]:
    """Send ``data`` on a fresh connection; what came back and whether the broker closed it
    (within ``limit`` seconds)."""
    host, port = broker.url.removeprefix("http://").split(":")
    received = b""
    with socket.create_connection((host, int(port)), timeout=limit) as sock:
        with contextlib.suppress(OSError):  # closed mid-send: what it sent is the answer
            sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            pass
    return received, True


head_starts = st.sampled_from([
    b"GET /", b"POST /v1/realtime/sessions HTTP/1.1\r\nHost: x\r\nX-",
    b"POST /v1/realtime/sessions HTTP/1.1\r\nHost: x\r\nX-Big: ",
    b"POST /v1/realtime/sessions HTTP/1.1\r\nHost: x\r\n",
])  # fmt: skip
head_units = st.one_of(
    st.binary(min_size=1, max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b),
    st.builds(lambda n, v: b"X-%s: %s\r\n" % (n, v),
              st.from_regex(rb"\A[A-Za-z0-9-]{1,20}\Z"), st.from_regex(rb"\A[a-z0-9 ]{0,30}\Z")),
)  # fmt: skip


@FUZZ
@given(start=head_starts, unit=head_units)
def test_heads_that_never_end(broker: TokenbrokerServer, start: bytes, unit: bytes) -> None:
    """A head of any shape that runs past http.max_header_bytes (16 KiB here) is answered
    once, 431 (or 400 when it is not HTTP), in the envelope, and the connection closed:
    never read to its end, never answered twice."""
    data = start + unit * (3 * 16384 // len(unit) + 1)
    received, closed = exchange(broker, data)
    assert closed
    assert received.count(b"HTTP/1.1 ") == 1, received[:200]
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.split()[1] in (b"431", b"400")
    assert json.loads(body)["error"]["code"] in ("headers_too_large", "invalid_http")


@FUZZ
@given(declared=st.integers(min_value=1, max_value=10**12),
       media=st.sampled_from(["application/json", "text/plain", "application/sdp"]),
       sent=st.binary(max_size=2000), after=st.binary(max_size=4000))  # fmt: skip
def test_after_an_error_nothing_more_is_read(
    broker: TokenbrokerServer, upstream: FakeUpstream, declared: int, media: str,
    sent: bytes, after: bytes,
) -> None:  # fmt: skip
    """A request refused before its body is complete (too large, or not JSON) gets one
    reply with Connection: close and the connection ends, however much more of the body
    the client sends; the upstream is never asked."""
    if declared <= 65536 and media == "application/json":
        declared += 65536  # keep it refused before the body: 413
    before = upstream_count(upstream)
    token = make_token("fuzz-after-error")
    text = (f"POST /v1/realtime/sessions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            f"{token}\r\nContent-Type: {media}\r\nContent-Length: {declared}\r\n\r\n")  # fmt: skip
    head = text.encode()
    body = (sent + after)[: declared - 1]  # however much comes, the body stays incomplete
    received, closed = exchange(broker, head + body)
    assert closed
    assert received.count(b"HTTP/1.1 ") == 1, received[:300]
    reply_head, _, body = received.partition(b"\r\n\r\n")
    assert reply_head.split()[1] in (b"413", b"415")
    assert b"connection: close" in reply_head.lower()
    check_envelope = json.loads(body)["error"]
    assert set(check_envelope) == {"type", "code", "message", "param"}
    assert upstream_count(upstream) == before
