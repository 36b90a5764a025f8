"""A GPT-Live session's sideband with the real key: ``wss://…/live/sessions/{id}/attach``
(the same relative path on Azure), the server-side view of the whole session (usage,
delegation, closing), and ending a session from any replica: attach, send
``session.close``, let go. On an aiohttp client of its own without a connection cap: each
watched session holds its connection for the session's life.
"""

from __future__ import annotations

import contextlib
import json

import aiohttp
from yarl import URL

from tokenbroker.upstream.client import Upstream
from tokenbroker.upstream.sideband import SidebandGone, SocketClient

CLOSE_WAIT = 2.0  # seconds an ending replica waits for the upstream to close the session


class LiveSideband:
    def __init__(self, upstream: Upstream) -> None:
        self._up = upstream
        base = URL(f"{upstream.base_url}/live/sessions")
        self._base = base.with_scheme("wss" if base.scheme == "https" else "ws")
        self._sockets = SocketClient(upstream.connection)
        self._proxy = self._sockets.proxy

    @property
    def _client(self) -> aiohttp.ClientSession:
        return self._sockets.session

    async def close(self) -> None:
        await self._sockets.close()

    async def attach(self, session_id: str) -> aiohttp.ClientWebSocketResponse:
        """The session's sideband; :class:`SidebandGone` when the upstream has no such
        session, ``aiohttp.ClientError``/``TimeoutError`` when unreachable."""
        headers = await self._up.auth_headers(bearer=True)  # as for creation
        try:
            return await self._client.ws_connect(
                self._base / session_id / "attach", headers=headers,
                proxy=self._proxy, heartbeat=20.0, timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                max_msg_size=16 * 1024 * 1024,
            )  # fmt: skip
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (400, 403, 404, 410):
                raise SidebandGone(f"sideband refused ({exc.status})") from None
            raise

    async def end(self, session_id: str) -> bool:
        """Ask the upstream to close the session (``session.close`` on a sideband of this
        replica's, whoever watches it); False if it could not be asked."""
        try:
            ws = await self.attach(session_id)
        except SidebandGone:
            return True  # over already
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
        async with ws:
            await ws.send_str(json.dumps({"type": "session.close"}))
            with contextlib.suppress(TimeoutError):
                while not ws.closed:  # until the upstream closes it, a short while at most
                    message = await ws.receive(timeout=CLOSE_WAIT)
                    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                        aiohttp.WSMsgType.ERROR):  # fmt: skip
                        break
        return True
