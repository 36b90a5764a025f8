"""The upstream's calls interface with the real key: create a call from an SDP offer and an
enforced session (``POST {url}/realtime/calls``, multipart), hang it up, and open its
sideband WebSocket (``{url}/realtime?call_id=…`` as ``wss://``). The same relative paths
serve OpenAI and Azure (whose ``url`` is ``https://{resource}.openai.azure.com/openai/v1``).

Creating a call is not retried: a call created twice would be a call nobody watches.
This interface has its own aiohttp client (the mints have theirs, upstream/client), with
a connection pool without a cap: each sideband holds its connection for the call's life,
and thousands of them must not starve the call creations.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from tokenbroker.infra.breaker import CircuitBreaker
from tokenbroker.upstream.client import Upstream
from tokenbroker.upstream.failures import Failure, Kind, UpstreamError, failed
from tokenbroker.upstream.sideband import CALL_ID, SidebandGone, SocketClient


@dataclass(frozen=True, slots=True)
class CreatedCall:
    call_id: str
    answer: str  # the SDP answer


class CallsUpstream:
    def __init__(self, upstream: Upstream) -> None:
        self._up = upstream
        self._calls = URL(f"{upstream.base_url}/realtime/calls")
        base = URL(f"{upstream.base_url}/realtime")
        self._sideband = base.with_scheme("wss" if base.scheme == "https" else "ws")
        self._sockets = SocketClient(upstream.connection)
        self._proxy = self._sockets.proxy
        self._connect_timeout = self._sockets.connect_timeout

    @property
    def _client(self) -> aiohttp.ClientSession:
        return self._sockets.session

    async def close(self) -> None:
        await self._sockets.close()

    def _timeout(self, deadline: float) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=max(deadline - time.monotonic(), 0.001), connect=self._connect_timeout
        )

    async def create(self, sdp: str, session: dict[str, Any]) -> CreatedCall:
        """The call the upstream created, or :class:`UpstreamError`."""
        breaker = self._up.breaker
        if not breaker.allow():
            failure = Failure(Kind.OPEN_CIRCUIT)
            raise UpstreamError(failure, failure.error())
        form = aiohttp.FormData()
        form.add_field("sdp", sdp, content_type="application/sdp")
        form.add_field("session", json.dumps(session), content_type="application/json")
        body = form()  # the session's default Content-Type (JSON) must not replace its own
        headers = {**await self._up.auth_headers(), "Content-Type": body.content_type}
        deadline = time.monotonic() + self._up.deadline
        try:
            async with self._client.post(
                self._calls, data=body, headers=headers,
                allow_redirects=False, proxy=self._proxy, timeout=self._timeout(deadline),
            ) as reply:  # fmt: skip
                status, content = reply.status, await reply.read()
                location, retry_after = (
                    reply.headers.get("Location", ""),
                    reply.headers.get("Retry-After"),
                )
        except aiohttp.ConnectionTimeoutError:
            breaker.failure()
            raise failed(Kind.UNREACHABLE) from None
        except TimeoutError:
            breaker.failure()
            raise failed(Kind.TIMEOUT) from None
        except aiohttp.ClientError:
            breaker.failure()
            raise failed(Kind.UNREACHABLE) from None
        created(breaker, status, retry_after)
        call_id = location.rstrip("/").rsplit("/", 1)[-1]
        answer = content.decode("utf-8", errors="replace")
        if not CALL_ID.match(call_id) or not answer.startswith("v=0"):
            raise failed(Kind.INVALID)
        return CreatedCall(call_id, answer)

    async def hangup(self, call_id: str) -> bool:
        """Ask the upstream to end the call; False if it did not take the request."""
        deadline = time.monotonic() + self._up.deadline
        try:
            async with self._client.post(
                self._calls / call_id / "hangup", headers=await self._up.auth_headers(),
                allow_redirects=False, proxy=self._proxy, timeout=self._timeout(deadline),
            ) as reply:  # fmt: skip
                await reply.read()
                return reply.status < 300
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def sideband(self, call_id: str) -> aiohttp.ClientWebSocketResponse:
        """The call's server-side WebSocket; :class:`SidebandGone` when the upstream says
        there is no such call, ``aiohttp.ClientError``/``TimeoutError`` when unreachable."""
        try:
            return await self._client.ws_connect(
                self._sideband.with_query(call_id=call_id),
                headers=await self._up.auth_headers(),
                proxy=self._proxy,
                heartbeat=20.0,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                max_msg_size=16 * 1024 * 1024,
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (400, 403, 404, 410):
                raise SidebandGone(f"sideband refused ({exc.status})") from None
            raise


def created(breaker: CircuitBreaker, status: int, retry_after: str | None) -> None:
    """The call creation's reply status told to the breaker; :class:`UpstreamError` unless it
    created (200/201). Not retried: a call created twice would be one nobody watches."""
    if status in (200, 201):
        breaker.success()
        return
    failure = Failure(Kind.STATUS, status, retry_after)
    breaker.failure() if failure.unhealthy else breaker.success()
    raise UpstreamError(failure, failure.error())
