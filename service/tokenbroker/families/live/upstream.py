"""The upstream's GPT-Live sessions with the real key: ``POST {url}/live/sessions`` with
``{"session", "transport": {"type": "webrtc", "sdp"}}``, 201 with the session's id and
the SDP answer. The same relative path serves OpenAI and Azure (whose ``url`` is
``https://{resource}.openai.azure.com/openai/v1``). Azure's GPT-Live examples all send the
key as ``Authorization: Bearer`` (not ``api-key``, as Realtime on Azure does), so a key
goes as a bearer token here whatever the dialect. Sent with the mints' client (pyreqwest:
the least CPU per call, docs/performance.md). Not retried: a session created twice would
be a session nobody asked for.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pyreqwest.exceptions import ConnectTimeoutError, RequestError

from tokenbroker.upstream.client import Upstream
from tokenbroker.upstream.failures import Kind, failed
from tokenbroker.upstream.sideband import created

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # opaque: kept byte for byte


@dataclass(frozen=True, slots=True)
class CreatedSession:
    session_id: str
    answer: str


class LiveUpstream:
    def __init__(self, upstream: Upstream) -> None:
        self._up = upstream
        self._sessions = f"{upstream.base_url}/live/sessions"

    async def _headers(self) -> dict[str, str]:
        headers = dict(await self._up.auth_headers())
        key = headers.pop("api-key", None)
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    async def create(self, session: dict[str, Any], sdp: str) -> CreatedSession:
        """The session the upstream created, or :class:`UpstreamError`."""
        breaker = self._up.breaker
        if not breaker.allow():
            raise failed(Kind.OPEN_CIRCUIT)
        body = json.dumps({"session": session, "transport": {"type": "webrtc", "sdp": sdp}})
        deadline = time.monotonic() + self._up.deadline
        try:
            request = self._up.client.post(self._sessions).headers(await self._headers())
            request = request.body_bytes(body.encode()).timeout(
                timedelta(seconds=self._up.deadline)
            )
            reply = await request.build().send()
            status, content = reply.status, (await reply.bytes()).to_bytes()
            retry_after = reply.get_header("retry-after")
        except ConnectTimeoutError:
            breaker.failure()
            raise failed(
                Kind.TIMEOUT if time.monotonic() >= deadline else Kind.UNREACHABLE
            ) from None
        except TimeoutError:
            breaker.failure()
            raise failed(Kind.TIMEOUT) from None
        except RequestError:
            breaker.failure()
            raise failed(Kind.UNREACHABLE) from None
        created(breaker, status, retry_after)
        return _created(content)


def _created(content: bytes) -> CreatedSession:
    try:
        reply = json.loads(content)
        session_id, answer = reply["session"]["id"], reply["transport"]["sdp"]
    except (ValueError, KeyError, TypeError):
        raise failed(Kind.INVALID) from None
    if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
        raise failed(Kind.INVALID)
    if not isinstance(answer, str) or not answer.startswith("v=0"):
        raise failed(Kind.INVALID)
    return CreatedSession(session_id, answer)
