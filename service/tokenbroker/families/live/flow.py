"""One GPT-Live session created for a browser: the user's JWT, the policy's ``live``
section, the user's limits and a place among their live sessions, then the upstream's
``POST /live/sessions`` with the real key, and the SDP answer back.

Bad input is refused before anything is charged; a session the upstream did not create
gives back both the rate-limit charge and the place. The place is held for the policy's
``calls.max_duration`` (a session's whole life), so ``calls.max_live_calls`` counts
GPT-Live sessions and Realtime calls together.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import math
import os
from collections.abc import Mapping, Sequence

from tokenbroker.errors import PermissionDenied, RateLimited
from tokenbroker.families.live.enforce import enforce_live
from tokenbroker.families.live.policy import LivePolicy
from tokenbroker.families.live.request import parse_create
from tokenbroker.families.live.upstream import CreatedSession, LiveUpstream
from tokenbroker.flow.context import RequestContext
from tokenbroker.flow.mint import Broker, policy_adjusted
from tokenbroker.flow.runtime import FamilyReply
from tokenbroker.infra.redis import STORE_ERRORS
from tokenbroker.registry.registry import CallRegistry


def safety_key(secret: str | None, upstream_key: str | None) -> bytes:
    """The pseudonyms' key: the configured secret, else one derived from the upstream key
    (stable across replicas and restarts either way), else a random one (dev mode)."""
    if secret:
        return secret.encode()
    if upstream_key:
        return hashlib.sha256(b"tokenbroker safety_identifier\0" + upstream_key.encode()).digest()
    return os.urandom(32)


class LiveSessions:
    """The ``live`` API family's flow (``Runtime.families["live"]``)."""

    def __init__(
        self, broker: Broker, registry: CallRegistry, upstream: LiveUpstream,
        secrets: Mapping[str, str], key: bytes,
    ) -> None:  # fmt: skip
        self._broker = broker
        self._registry = registry
        self._upstream = upstream
        self._secrets = secrets
        self._key = key

    async def _give_back(self, place: asyncio.Future[float | None], user_id: str,
                         token: str) -> None:  # fmt: skip
        """The place, if it was held, for a session that was not created."""
        with contextlib.suppress(*STORE_ERRORS):
            if await place is None:
                await self._registry.release(user_id, token)

    def pseudonym(self, user_id: str) -> str:
        """The user's ``safety_identifier``: stable, not reversible without the key."""
        digest = hmac.new(self._key, user_id.encode(), hashlib.sha256).hexdigest()
        return f"tbu_{digest[:32]}"

    async def create(
        self, authorization: Sequence[str], raw: bytes, log: RequestContext
    ) -> FamilyReply:
        broker = self._broker
        user_id, claims = await broker.identify(authorization, log)
        session, sdp = parse_create(raw)
        policy, global_limits = broker.policy(user_id, claims, log)
        live: LivePolicy | None = policy.sections.get("live")
        if policy.disabled:
            raise PermissionDenied("policy_disabled", "Your account may not create sessions.")
        if live is None:
            raise PermissionDenied("live_not_allowed", "Your policy does not allow GPT-Live "
                                   "sessions.")  # fmt: skip
        await broker.admit(user_id, policy, call=True)
        enforced = enforce_live(live, session, self.pseudonym(user_id), self._secrets)
        log.model = enforced.session["model"]
        token = f"reserve:live:{os.urandom(9).hex()}"
        rules = policy.calls
        # the place among the user's live sessions is asked for while the limits are
        # charged (two Redis round trips at once, not one after the other)
        place = asyncio.ensure_future(self._registry.reserve(
            user_id, rules.max_live_calls, token, rules.max_duration))  # fmt: skip

        async def attempt() -> CreatedSession:
            wait = await place
            if wait is not None:  # the charge goes back (charged refunds what fails here)
                message = (f"You have {rules.max_live_calls} live sessions, the most your "
                           "policy allows.")  # fmt: skip
                retry = str(max(1, math.ceil(wait)))
                raise RateLimited("live_calls_exceeded", message, headers={"Retry-After": retry})
            return await self._upstream.create(enforced.session, sdp)

        try:
            created, headers = await broker.charged(user_id, policy, global_limits, attempt, log)
        except BaseException:
            await self._give_back(place, user_id, token)
            raise
        log.detail = f"live={created.session_id}"
        headers["Location"] = f"/v1/live/sessions/{created.session_id}"
        if enforced.adjusted:
            headers["Policy-Adjusted"] = policy_adjusted(enforced.adjusted)
        body = {"session": {"id": created.session_id},
                "transport": {"type": "webrtc", "sdp": created.answer}}  # fmt: skip
        return FamilyReply(201, body, headers)
