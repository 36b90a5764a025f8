"""The upstream call: ``POST {upstream_url}/realtime/sessions`` with the real API key.

Only the ephemeral ``client_secret`` and the model leave this module. Upstream failures
become the broker's errors (SPEC §2): rejections and auth failures 502, rate limiting 503
with the upstream's ``Retry-After``, timeouts 504. ``refundable`` on the error says whether
the user's rate-limit charge should be given back.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import httpx

from .errors import BrokerError, Unavailable, UpstreamFailed, UpstreamTimeout


@dataclass(frozen=True, slots=True)
class Minted:
    value: str
    expires_at: int


class UpstreamError(Exception):
    """Wraps the client-facing error and whether the mint's charge goes back."""

    def __init__(self, error: BrokerError, *, refundable: bool) -> None:
        super().__init__(error.message)
        self.error = error
        self.refundable = refundable


def _retry_after(response: httpx.Response) -> str:
    try:
        return str(max(1, math.ceil(float(response.headers.get("retry-after", "1")))))
    except ValueError:
        return "1"


def _parse(response: httpx.Response) -> Minted:
    try:
        secret = json.loads(response.content)["client_secret"]
        value, expires_at = secret["value"], secret["expires_at"]
    except (ValueError, KeyError, TypeError):
        value = expires_at = None
    if (
        not isinstance(value, str)
        or not value
        or isinstance(expires_at, bool)
        or not isinstance(expires_at, int)
    ):
        raise UpstreamError(
            UpstreamFailed(
                "upstream_invalid_response", "The upstream answered without a usable client secret."
            ),
            refundable=False,
        )
    return Minted(value, expires_at)


class Upstream:
    def __init__(self, client: httpx.AsyncClient, api_key: str | None) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {api_key or ''}"}

    async def create_session(self, config: dict[str, object]) -> Minted:
        try:
            response = await self._client.post(
                "/realtime/sessions", content=json.dumps(config), headers=self._headers
            )
        except httpx.TimeoutException:
            raise UpstreamError(
                UpstreamTimeout("upstream_timeout", "The upstream did not answer in time."),
                refundable=True,
            ) from None
        except httpx.HTTPError:
            raise UpstreamError(
                UpstreamFailed("upstream_error", "The upstream could not be reached."),
                refundable=True,
            ) from None
        status = response.status_code
        if status == 200:
            return _parse(response)
        if status == 429:
            error: BrokerError = Unavailable(
                "upstream_rate_limited",
                "The upstream is rate limiting; retry later.",
                headers={"Retry-After": _retry_after(response)},
            )
            raise UpstreamError(error, refundable=True)
        if status in (401, 403):
            error = UpstreamFailed("upstream_auth_failed", "The upstream refused the broker's key.")
            raise UpstreamError(error, refundable=True)
        if 400 <= status < 500:
            error = UpstreamFailed("upstream_rejected", "The upstream rejected the session config.")
            raise UpstreamError(error, refundable=True)
        error = UpstreamFailed("upstream_error", f"The upstream failed (status {status}).")
        raise UpstreamError(error, refundable=True)


def make_client(
    base_url: str,
    *,
    connect_timeout: float,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        headers={"Content-Type": "application/json", "User-Agent": "tokenbroker"},
        follow_redirects=False,
        transport=transport,
    )
