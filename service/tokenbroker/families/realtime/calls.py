"""The Realtime API's live calls: auth → policy → budgets → live-call cap → limits → upstream call →
registry → a watcher on this replica; and the owner's hang-up.

The browser's session (GA shape) is checked against the schema data and enforced like a
client secret's; the call is created upstream with the enforced session and the real key.
Whatever fails after the user was charged gives the charge and the live-call place back;
a call created upstream but not registered is hung up at once (nobody would watch it).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Sequence
from typing import Any

from tokenbroker.errors import InvalidRequest, NotFound, RateLimited, Unavailable
from tokenbroker.families.realtime.dialects.ga import from_ga, ga_path, to_ga
from tokenbroker.families.realtime.enforce_ga import enforce_ga
from tokenbroker.families.realtime.mint import enforce_ga_session
from tokenbroker.families.realtime.request_ga import validate_client_secret_request
from tokenbroker.families.realtime.upstream import CallsUpstream, CreatedCall
from tokenbroker.flow.calls import CallReply, check_offer, ended_call
from tokenbroker.flow.context import RequestContext
from tokenbroker.flow.mint import Broker, policy_adjusted
from tokenbroker.flow.watched import LiveCalls
from tokenbroker.infra.redis import STORE_ERRORS
from tokenbroker.registry.registry import CallRecord
from tokenbroker.upstream.sideband import CALL_ID


def _session_request(session: Any) -> dict[str, Any]:
    """The browser's GA session, checked as a client-secret request's session."""
    if session is None:
        session = {"type": "realtime"}
    if not isinstance(session, dict):
        raise InvalidRequest("invalid_type", "'session' must be a JSON object.", param="session")
    checked = validate_client_secret_request({"session": session})["session"]
    if checked.get("type") != "realtime":
        raise InvalidRequest("invalid_value", "A call's session must be of type realtime.",
                             param="session.type")  # fmt: skip
    return checked  # type: ignore[no-any-return]


class CallFlow:
    def __init__(self, broker: Broker, live: LiveCalls, upstream: CallsUpstream) -> None:
        self._broker = broker
        self._live = live
        self._upstream = upstream

    async def create(
        self, authorization: Sequence[str], sdp: Any, session: Any, log: RequestContext
    ) -> CallReply:
        broker = self._broker
        user_id, claims = await broker.identify(authorization, log)
        offer = check_offer(sdp)
        seed, ga_only = from_ga(_session_request(session))
        policy, global_limits = broker.policy(user_id, claims, log)
        await broker.admit(user_id, policy, call=True)
        enforced = enforce_ga_session(policy, seed)
        extra, clamped = enforce_ga(policy, ga_only, None)
        body, dropped = to_ga(enforced.session, extra)
        ga_session: dict[str, Any] = body["session"]
        log.model, log.voice = enforced.session.get("model"), enforced.session.get("voice")
        if self._live.full:
            raise Unavailable("replica_full", "This replica watches all the calls it can; retry.",
                              headers={"Retry-After": "1"})  # fmt: skip
        token = f"reserve:{os.urandom(9).hex()}"
        registry = self._live.registry
        try:
            wait = await registry.reserve(user_id, policy.calls.max_live_calls, token)
        except STORE_ERRORS:
            raise Unavailable("store_unavailable", "The call registry is unavailable; retry.",
                              headers={"Retry-After": "1"}) from None  # fmt: skip
        if wait is not None:
            raise RateLimited("live_calls_exceeded",
                              f"You have {policy.calls.max_live_calls} live calls, the most "
                              "your policy allows.",
                              headers={"Retry-After": str(max(1, math.ceil(wait)))})  # fmt: skip

        async def attempt() -> tuple[CallRecord, str, float]:
            """Create the call upstream and register it: one step for the charge, so a
            call that could not be registered (and was hung up) costs nothing."""
            created = await self._upstream.create(offer, ga_session)
            asked = time.monotonic()  # the lease starts no earlier than this
            record = await self._register(token, created, user_id, policy.name, ga_session,
                                          policy.calls.max_duration)  # fmt: skip
            return record, created.answer, asked

        try:
            (record, answer, asked), headers = await broker.charged(
                user_id, policy, global_limits, attempt, log
            )
        except BaseException:
            with contextlib.suppress(*STORE_ERRORS):
                await registry.release(user_id, token)
            raise
        self._live.watch(record, asked)
        log.detail = f"call={record.call_id}"
        if clamped or enforced.adjusted or dropped:
            names = (*enforced.adjusted, *clamped, *dropped)
            headers["Policy-Adjusted"] = policy_adjusted(names, ga_path)
        headers["Location"] = f"/v1/realtime/calls/{record.call_id}"
        return CallReply(record.call_id, answer, headers)

    async def _register(
        self, token: str, created: CreatedCall, user_id: str, policy: str,
        session: dict[str, Any], max_duration: float,
    ) -> CallRecord:  # fmt: skip
        try:
            return await self._live.registry.register(
                token, created.call_id, user_id, policy, session, max_duration,
                self._live.replica, self._live.lease,
            )  # fmt: skip
        except STORE_ERRORS:
            await self._upstream.hangup(created.call_id)  # unwatched calls must not live
            raise Unavailable("store_unavailable", "The call registry is unavailable; retry.",
                              headers={"Retry-After": "1"}) from None  # fmt: skip
        except asyncio.CancelledError:  # the shutdown grace ran out: no one will watch it
            hangup = asyncio.ensure_future(self._upstream.hangup(created.call_id))
            self._live.keep(hangup)
            raise

    async def _own(
        self, authorization: Sequence[str], call_id: str, log: RequestContext
    ) -> CallRecord:
        """The user's live call ``call_id``; 404 for another user's or none."""
        user_id, _ = await self._broker.identify(authorization, log)
        record = None
        if CALL_ID.match(call_id):
            try:
                record = await self._live.registry.get(call_id)
            except STORE_ERRORS:
                raise Unavailable("store_unavailable", "The call registry is unavailable; "
                                  "retry.", headers={"Retry-After": "1"}) from None  # fmt: skip
        if record is None or record.user_id != user_id:
            raise NotFound("call_not_found", "No such live call.", param="call_id")
        log.policy, log.detail = record.policy, f"call={call_id}"
        return record

    async def info(
        self, authorization: Sequence[str], call_id: str, log: RequestContext
    ) -> dict[str, Any]:
        """The owner's view of a live call: its policy, start and end, budgets left; of an
        ended one (for a while after its end): why it ended and what it used."""
        try:
            record = await self._own(authorization, call_id, log)
        except NotFound:
            ended = await ended_call(self._broker, self._live, authorization, call_id, log)
            return {"id": call_id, "object": "realtime.call", **ended}
        policy = self._live.policy_for(record)
        spent = await self._live.ledger.spent(record.user_id, policy.budgets)
        return {"id": call_id, "object": "realtime.call",
                "status": "ending" if record.end_reason else "live",
                **({"reason": record.end_reason} if record.end_reason else {}),
                "policy": record.policy,
                "started_at": int(record.started), "ends_at": int(record.deadline),
                "idle_timeout": policy.calls.idle_timeout,
                "budgets": [s.left for s in spent]}  # fmt: skip

    async def hang_up(
        self, authorization: Sequence[str], call_id: str, log: RequestContext
    ) -> dict[str, Any]:
        """The owner ends the call; another user (or no such call) gets 404."""
        record = await self._own(authorization, call_id, log)
        if not await self._live.end(record, "client"):
            raise Unavailable("upstream_error", "The upstream did not take the hang-up; retry.",
                              headers={"Retry-After": "1"})  # fmt: skip
        return {"id": call_id, "object": "realtime.call", "status": "ending"}
