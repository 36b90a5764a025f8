"""One GPT-Live session created for a browser: the user's JWT, the policy's ``live``
section, the user's limits and a place among their live sessions, then the upstream's
``POST /live/sessions`` with the real key, and the SDP answer back.

Bad input is refused before anything is charged; a session the upstream did not create
gives back both the rate-limit charge and the place. A created session is registered
like a Realtime call (``calls.max_live_calls`` counts both) and watched for its whole
life by one replica (:mod:`.watch`); its owner reads its state and ends it here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tokenbroker.errors import NotFound, PermissionDenied, RateLimited, Unavailable
from tokenbroker.families.live.enforce import enforce_live
from tokenbroker.families.live.policy import LivePolicy
from tokenbroker.families.live.request import parse_create
from tokenbroker.families.live.sideband import LiveSideband
from tokenbroker.families.live.upstream import CreatedSession, LiveUpstream
from tokenbroker.flow.calls import ended_call
from tokenbroker.flow.context import RequestContext
from tokenbroker.flow.mint import Broker, policy_adjusted
from tokenbroker.flow.runtime import FamilyReply
from tokenbroker.flow.watched import LiveCalls
from tokenbroker.infra.redis import STORE_ERRORS
from tokenbroker.registry.registry import CallRecord, CallRegistry
from tokenbroker.upstream.sideband import CALL_ID


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
        self, broker: Broker, live: LiveCalls, upstream: LiveUpstream, sideband: LiveSideband,
        secrets: Mapping[str, str], key: bytes,
    ) -> None:  # fmt: skip
        self._broker = broker
        self._live = live
        self._registry: CallRegistry = live.registry
        self._upstream = upstream
        self._sideband = sideband
        self._secrets = secrets
        self._key = key

    async def _register(
        self, token: str, session_id: str, user_id: str, policy: str, session: dict[str, Any],
        max_duration: float,
    ) -> CallRecord:  # fmt: skip
        try:
            return await self._registry.register(
                token, session_id, user_id, policy, session, max_duration,
                self._live.replica, self._live.lease, api="live",
            )  # fmt: skip
        except STORE_ERRORS:
            await self._sideband.end(session_id)  # an unwatched session must not live
            raise Unavailable("store_unavailable", "The call registry is unavailable; retry.",
                              headers={"Retry-After": "1"}) from None  # fmt: skip
        except asyncio.CancelledError:  # the shutdown grace ran out: no one will watch it
            self._live.keep(asyncio.ensure_future(self._sideband.end(session_id)))
            raise

    async def _own(
        self, authorization: Sequence[str], session_id: str, log: RequestContext
    ) -> CallRecord | None:
        """The user's live session ``session_id``; None if there is none of theirs."""
        user_id, _ = await self._broker.identify(authorization, log)
        record = await self._registry.get(session_id) if CALL_ID.match(session_id) else None
        if record is None or record.user_id != user_id or record.api != "live":
            return None
        log.policy, log.detail = record.policy, f"live={session_id}"
        return record

    async def info(
        self, authorization: Sequence[str], session_id: str, log: RequestContext
    ) -> dict[str, Any]:
        """The owner's view of a live session (its end, budgets left, seconds used); of an
        ended one, for a while after its end, why it ended and what it used."""
        record = await self._own(authorization, session_id, log)
        if record is None:
            ended = await ended_call(self._broker, self._live, authorization, session_id, log)
            return {"id": session_id, "object": "live.session", **ended}
        policy = self._live.policy_for(record)
        spent = await self._live.ledger.spent(record.user_id, policy.budgets)
        seconds = await self._live.ledger.session_seconds(record.user_id, session_id)
        return {"id": session_id, "object": "live.session",
                "status": "ending" if record.end_reason else "live",
                **({"reason": record.end_reason} if record.end_reason else {}),
                "policy": record.policy,
                "started_at": int(record.started), "ends_at": int(record.deadline),
                "idle_timeout": policy.calls.idle_timeout, "seconds_used": seconds,
                "budgets": [s.left for s in spent]}  # fmt: skip

    async def end(
        self, authorization: Sequence[str], session_id: str, log: RequestContext
    ) -> dict[str, Any]:
        """The owner ends the session; another user (or no such session) gets 404."""
        record = await self._own(authorization, session_id, log)
        if record is None:
            raise NotFound("session_not_found", "No such live session.", param="session_id")
        if not await self._live.end(record, "client"):
            raise Unavailable("upstream_error", "The upstream did not take the close; retry.",
                              headers={"Retry-After": "1"})  # fmt: skip
        return {"id": session_id, "object": "live.session", "status": "ending"}

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
        if self._live.full:
            raise Unavailable("replica_full", "This replica watches all the sessions it can; "
                              "retry.", headers={"Retry-After": "1"})  # fmt: skip
        token = f"reserve:{os.urandom(9).hex()}"
        rules = policy.calls
        # the place among the user's live sessions is asked for while the limits are
        # charged (two Redis round trips at once, not one after the other)
        place = asyncio.ensure_future(self._registry.reserve(user_id, rules.max_live_calls,
                                                             token))  # fmt: skip

        async def attempt() -> tuple[CallRecord, str, float]:
            wait = await place
            if wait is not None:  # the charge goes back (charged refunds what fails here)
                message = (f"You have {rules.max_live_calls} live sessions, the most your "
                           "policy allows.")  # fmt: skip
                retry = str(max(1, math.ceil(wait)))
                raise RateLimited("live_calls_exceeded", message, headers={"Retry-After": retry})
            created = await self._upstream.create(enforced.session, sdp)
            asked = time.monotonic()  # the lease starts no earlier than this
            record = await self._register(token, created.session_id, user_id, policy.name,
                                          enforced.session, rules.max_duration)  # fmt: skip
            return record, created.answer, asked

        try:
            (record, answer, asked), headers = await broker.charged(
                user_id, policy, global_limits, attempt, log)  # fmt: skip
        except BaseException:
            await self._give_back(place, user_id, token)
            raise
        self._live.watch(record, asked)
        created = CreatedSession(record.call_id, answer)
        log.detail = f"live={created.session_id}"
        headers["Location"] = f"/v1/live/sessions/{created.session_id}"
        if enforced.adjusted:
            headers["Policy-Adjusted"] = policy_adjusted(enforced.adjusted)
        body = {"session": {"id": created.session_id},
                "transport": {"type": "webrtc", "sdp": created.answer}}  # fmt: skip
        return FamilyReply(201, body, headers)
