"""What every API family's calls share upstream: the form of a call's (or session's) id,
kept byte for byte; the sideband refused (the call is over, or was never there); the
aiohttp client their sidebands go through."""

from __future__ import annotations

import re

import aiohttp
from yarl import URL

from tokenbroker.upstream.client import Connection

CALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # opaque: any family's id fits


class SidebandGone(Exception):
    """The upstream refused the sideband: the call is over (or was never there)."""


class SocketClient:
    """An aiohttp client without a connection cap, made on first use: each sideband holds
    its connection for the call's life, and thousands of them must not starve the call
    creations (the mints have their own client, upstream/client.py)."""

    def __init__(self, connection: Connection) -> None:
        self.proxy = URL(connection.proxy) if connection.proxy else None
        self.connect_timeout = connection.connect_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None, connect=self.connect_timeout),
                headers={"User-Agent": "tokenbroker"},
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
