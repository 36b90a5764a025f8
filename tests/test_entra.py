"""Azure with Microsoft Entra ID: bearer tokens from a credential, kept until shortly before
they expire, one fetch at a time; the upstream call carries the token, not a key."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from conftest import API_KEY, FakeUpstream
from tokenbroker.families.realtime.dialects import AZURE
from tokenbroker.upstream.client import Connection, Upstream
from tokenbroker.upstream.entra import SCOPE, EntraToken


@dataclass
class AccessToken:  # the shape of azure.core.credentials.AccessToken
    token: str
    expires_on: int


class Credential:
    """Stands in for azure-identity's credential: counts its token requests."""

    def __init__(self, token: str = API_KEY) -> None:
        self.token, self.calls = token, 0
        self.scopes: list[str] = []

    async def get_token(self, *scopes: str) -> AccessToken:
        self.calls += 1
        self.scopes += scopes
        await asyncio.sleep(0)  # let concurrent callers pile up behind the lock
        return AccessToken(self.token, 10_000)


async def test_tokens_are_kept_until_near_expiry() -> None:
    """One fetch for many concurrent callers; the same token until 5 minutes before its
    expiry; a new one after that."""
    now = [1_000.0]
    credential = Credential()
    entra = EntraToken(credential, clock=lambda: now[0])
    headers = await asyncio.gather(*(entra.headers() for _ in range(20)))
    assert {h["Authorization"] for h in headers} == {f"Bearer {API_KEY}"}
    assert credential.calls == 1 and credential.scopes == [SCOPE]
    now[0] = 10_000 - 301
    await entra.headers()
    assert credential.calls == 1
    now[0] = 10_000 - 299
    await entra.headers()
    assert credential.calls == 2


async def test_the_upstream_call_carries_the_token(upstream: FakeUpstream) -> None:
    """Against the fake's Azure endpoint: Authorization: Bearer <token>, no api-key."""
    base = upstream.url.removesuffix("/v1") + "/openai/v1"
    client = Upstream(Connection(1), base, None, key_header=AZURE.key_header,
                      token=EntraToken(Credential()))  # fmt: skip
    try:
        minted = await client.post(AZURE.path, {"session": {"type": "realtime"}}, AZURE.parse)
    finally:
        await client.close()
    assert minted.value.startswith("ek_")
    [request] = upstream.received()
    assert request["authorization"] == f"Bearer {API_KEY}" and request["api_key"] is None
    assert json.loads(request["body"]) == {"session": {"type": "realtime"}}
