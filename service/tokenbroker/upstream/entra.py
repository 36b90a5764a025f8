"""Microsoft Entra ID bearer tokens for Azure OpenAI (``upstream.azure_auth: entra_id``).

The credential is azure-identity's (the optional ``azure`` extra: ``DefaultAzureCredential``
finds a workload identity, a managed identity or the environment's service principal).
A token is fetched for the Cognitive Services scope, kept until five minutes before it
expires, and fetched again by one caller at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

SCOPE = "https://cognitiveservices.azure.com/.default"
EARLY = 300.0  # seconds before expiry that a token is replaced


class TokenCredential(Protocol):
    async def get_token(self, *scopes: str) -> Any: ...  # azure.core's AccessToken


class EntraToken:
    def __init__(self, credential: TokenCredential, clock: Callable[[], float] = time.time):
        self._credential = credential
        self._clock = clock
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = asyncio.Lock()

    async def headers(self) -> dict[str, str]:
        """``Authorization: Bearer …`` with a token valid for a while yet."""
        if self._token is None or self._clock() >= self._expires_on - EARLY:
            async with self._lock:
                if self._token is None or self._clock() >= self._expires_on - EARLY:
                    access = await self._credential.get_token(SCOPE)
                    self._token, self._expires_on = access.token, float(access.expires_on)
        return {"Authorization": f"Bearer {self._token}"}


def default_credential() -> TokenCredential:
    """azure-identity's DefaultAzureCredential (install the ``azure`` extra)."""
    try:
        from azure.identity.aio import DefaultAzureCredential  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise RuntimeError(
            "upstream.azure_auth: entra_id needs azure-identity: "
            "pip install azure-identity (the project's azure extra: pip install '.[azure]')"
        ) from exc
    credential: TokenCredential = DefaultAzureCredential()
    return credential
