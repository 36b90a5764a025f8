"""The upstream's GPT-Live sessions with the real key: ``POST {url}/live/sessions`` with
``{"session", "transport": {"type": "webrtc", "sdp"}}``, 201 with the session's id and
the SDP answer. The same relative path serves OpenAI and Azure (whose ``url`` is
``https://{resource}.openai.azure.com/openai/v1``). Azure's GPT-Live examples all send the
key as ``Authorization: Bearer`` (not ``api-key``, as Realtime on Azure does), so a key
goes as a bearer token here whatever the dialect. Not retried: a session created twice
would be a session nobody asked for.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from tokenbroker.upstream.client import Upstream
from tokenbroker.upstream.failures import Failure, Kind, UpstreamError, failed

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # opaque: kept byte for byte


@dataclass(frozen=True, slots=True)
class CreatedSession:
    session_id: str
    answer: str


class LiveUpstream:
    def __init__(self, upstream: Upstream, client: aiohttp.ClientSession | None = None) -> None:
        self._up = upstream
        self._sessions = URL(f"{upstream.base_url}/live/sessions")
        proxy = upstream.connection.proxy
        self._proxy = URL(proxy) if proxy else None
        self._connect_timeout = upstream.connection.connect_timeout
        self._session = client

    @property
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=self._connect_timeout),
                headers={"User-Agent": "tokenbroker"}, cookie_jar=aiohttp.DummyCookieJar(),
            )  # fmt: skip
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _headers(self) -> dict[str, str]:
        headers = dict(await self._up.auth_headers())
        key = headers.pop("api-key", None)
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return {**headers, "Content-Type": "application/json"}

    async def create(self, session: dict[str, Any], sdp: str) -> CreatedSession:
        """The session the upstream created, or :class:`UpstreamError`."""
        breaker = self._up.breaker
        if not breaker.allow():
            raise failed(Kind.OPEN_CIRCUIT)
        body = json.dumps({"session": session, "transport": {"type": "webrtc", "sdp": sdp}})
        timeout = aiohttp.ClientTimeout(total=self._up.deadline, connect=self._connect_timeout)
        started = time.monotonic()
        try:
            async with self._client.post(
                self._sessions, data=body, headers=await self._headers(),
                allow_redirects=False, proxy=self._proxy, timeout=timeout,
            ) as reply:  # fmt: skip
                status, content = reply.status, await reply.read()
                retry_after = reply.headers.get("Retry-After")
        except aiohttp.ConnectionTimeoutError:
            breaker.failure()
            raise failed(Kind.UNREACHABLE) from None
        except TimeoutError:
            breaker.failure()
            late = time.monotonic() - started >= self._up.deadline
            raise failed(Kind.TIMEOUT if late else Kind.UNREACHABLE) from None
        except aiohttp.ClientError:
            breaker.failure()
            raise failed(Kind.UNREACHABLE) from None
        if status not in (200, 201):
            failure = Failure(Kind.STATUS, status, retry_after)
            breaker.failure() if failure.unhealthy else breaker.success()
            raise UpstreamError(failure, failure.error())
        breaker.success()
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
