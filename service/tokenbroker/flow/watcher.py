"""One live call, watched from the server side for its whole life through its sideband.

The watcher holds the upstream's WebSocket for the call and enforces the policy's
``calls`` rules: the duration cap and idle timeout (hang up), drift (revert with a
``session.update`` or hang up; a revert the upstream refuses hangs up too), usage (each
``response.done`` added once to the user's budgets; a spent budget hangs up all the
user's calls). A broken sideband is re-opened; a normal close means the call is over.
Cancelling the watcher (hand-over, lost lease) closes the sideband without ending the call.
Every enforcing action (a revert, a hang-up) first checks that this replica still holds
the call's lease (:meth:`LiveCalls.holds`); one that does not stops watching instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from tokenbroker.infra.redis import STORE_ERRORS
from tokenbroker.limits.usage import RATES, Usage, usage_of
from tokenbroker.policy.drift import revert, violations
from tokenbroker.policy.model import Policy
from tokenbroker.registry.notices import user_tag
from tokenbroker.registry.registry import CallRecord
from tokenbroker.upstream.calls import SidebandGone

if TYPE_CHECKING:
    from tokenbroker.flow.watched import LiveCalls

log = logging.getLogger("tokenbroker.calls")
MAX_REVERTS = 20  # a client that keeps drifting after this many reverts is hung up
RECONNECT_FOR = 30.0  # seconds a broken sideband is retried before the call is given up
RECOUNT_FOR = 60.0  # seconds a usage the store did not take is retried (ids make it safe)


@dataclass
class Tally:
    """What this watcher counted for the call (its end's log line and audit entry)."""

    tokens: int = 0
    cost_micros: int = 0
    responses: int = 0
    reverts: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    seconds: int = 0  # GPT-Live: billed voice seconds

    def usage(self) -> dict[str, Any]:
        """What the call used, as the owner's GET shows it once it ended."""
        return {"tokens": self.tokens, "seconds": self.seconds,
                "cost_usd": self.cost_micros / 1_000_000, "responses": self.responses}  # fmt: skip


class LeaseLapsed(Exception):
    """This replica may no longer act as the call's owner."""


class CallWatch:
    def __init__(self, record: CallRecord, live: LiveCalls) -> None:
        self.record = record
        self._live = live
        self.tally = Tally()
        self._last_event = time.time()
        self._reverts_sent: set[str] = set()  # the event ids of this watcher's reverts
        self.user_tag = user_tag(record.user_id)
        self._ws: aiohttp.ClientWebSocketResponse | None = None  # while attached
        self._in_flight: set[str] = set()  # the call's responses not done yet
        self.cutting = False  # a budget is spent: every response is cancelled on sight

    @property
    def policy(self) -> Policy:
        return self._live.policy_for(self.record)

    async def run(self) -> None:
        """Watch until the call ends; then record its end once. A watcher that fails in
        an unexpected way gives the call back (its lease ends now) to be adopted afresh,
        rather than keep renewing a lease for a call nobody watches."""
        try:
            reason = await self._watch()
        except LeaseLapsed:
            return  # let go (the keeper of holds cancels this task too); the call goes on
        except Exception:
            log.exception("call watcher failed", extra={"fields": {"call": self.record.call_id}})
            await self._live.give_back(self)
            return
        await self._live.finished(self, reason)

    async def _watch(self) -> str:
        broken_since: float | None = None
        backoff, attached = 0.1, False
        while True:
            try:
                ws = await self._live.upstream.sideband(self.record.call_id)
            except SidebandGone:  # ended already, or refused to this key: no call unwatched
                why = await self._recorded_reason("upstream")
                self._owner_check()
                await self._live.upstream.hangup(self.record.call_id)
                return why
            except (aiohttp.ClientError, TimeoutError, OSError):
                broken_since = broken_since or time.monotonic()
                if time.monotonic() - broken_since > RECONNECT_FOR:
                    return await self.hang_up("upstream")
                await asyncio.sleep(backoff)  # backoff between attempts, not a sync wait
                backoff = min(backoff * 2, 2.0)
                continue
            if attached:
                self._live.metrics.sideband_reconnects.inc()
            broken_since, backoff, attached = None, 0.1, True
            async with ws:
                self._ws = ws
                try:
                    reason = await self._session(ws)
                finally:
                    self._ws = None
            if reason is not None:
                return reason
            broken_since = time.monotonic()

    async def _session(self, ws: aiohttp.ClientWebSocketResponse) -> str | None:
        """Events until the call ends (its reason) or the sideband breaks (None)."""
        rules = self.policy.calls
        while True:
            now = time.time()
            wake = self.record.deadline
            if rules.idle_timeout is not None:
                wake = min(wake, self._last_event + rules.idle_timeout)
            try:
                message = await ws.receive(timeout=max(wake - now, 0.0))
            except TimeoutError:
                if time.time() >= self.record.deadline:
                    return await self.hang_up("duration", ws)
                if rules.idle_timeout is not None and (
                    time.time() >= self._last_event + rules.idle_timeout
                ):
                    return await self.hang_up("idle", ws)
                continue
            if message.type == aiohttp.WSMsgType.TEXT:
                self._last_event = time.time()
                reason = await self._event(message.data, ws)
                if reason is not None:
                    return reason
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                  aiohttp.WSMsgType.CLOSING):  # fmt: skip
                if ws.close_code == 1000:  # the upstream ended the call
                    return await self._recorded_reason("client")
                return None
            elif message.type == aiohttp.WSMsgType.ERROR:
                return None

    async def _event(self, data: str, ws: aiohttp.ClientWebSocketResponse) -> str | None:
        try:
            event: Any = json.loads(data)
        except ValueError:
            return None
        if not isinstance(event, dict):
            return None
        kind = event.get("type")
        if kind in ("session.created", "session.updated") and isinstance(
            event.get("session"), dict
        ):
            return await self._check_session(event["session"], ws)
        if kind == "response.created":
            response_id = (event.get("response") or {}).get("id")
            if isinstance(response_id, str):
                self._in_flight.add(response_id)
                if self.cutting:
                    await self._cancel(ws, [response_id])
            return None
        if kind == "response.done":
            self._in_flight.discard(str((event.get("response") or {}).get("id")))
            return await self._usage(event)
        if kind == "error":
            error: dict[str, Any] = event["error"] if isinstance(event.get("error"), dict) else {}
            log.info("call error event", extra={"fields": {"call": self.record.call_id,
                     "code": error.get("code")}})  # fmt: skip
            if str(error.get("event_id")) in self._reverts_sent:  # the policy stays broken
                log.info("call drifted", extra={"fields": {"call": self.record.call_id,
                         "refused": error.get("code"), "action": "hangup"}})  # fmt: skip
                return await self.hang_up("violation", ws)
        return None

    async def _check_session(
        self, session: dict[str, Any], ws: aiohttp.ClientWebSocketResponse
    ) -> str | None:
        policy = self.policy
        bad = violations(policy, self.record.session, session)
        if not bad:
            return None
        update = revert(policy, self.record.session, bad)
        give_up = self.tally.reverts >= MAX_REVERTS
        if policy.calls.on_violation == "hangup" or update is None or give_up:
            log.info("call drifted", extra={"fields": {"call": self.record.call_id,
                     "fields": bad, "action": "hangup"}})  # fmt: skip
            return await self.hang_up("violation", ws)
        self._owner_check()
        self.tally.reverts += 1
        # the upstream's error names it if it refuses the update; unguessable, so that a
        # browser's own event cannot pass for one
        update["event_id"] = f"tokenbroker_revert_{secrets.token_hex(8)}"
        self._reverts_sent.add(update["event_id"])
        self._live.metrics.call_reverts.labels("realtime").inc()
        log.info("call drifted", extra={"fields": {"call": self.record.call_id, "fields": bad,
                 "action": "revert"}})  # fmt: skip
        await ws.send_str(json.dumps(update))
        return None

    async def _usage(self, event: dict[str, Any]) -> str | None:
        usage = usage_of(event)
        if usage is None:
            return None
        response = event.get("response") or {}
        event_id = event.get("event_id") or response.get("id")
        if not isinstance(event_id, str) or not event_id:
            return None
        price = self._live.price(self.record.session.get("model"))
        cost = usage.cost_micros(price) if price is not None else 0
        started, pause = time.monotonic(), 0.05
        while True:  # the event id makes a retry safe: counted at most once
            try:
                spent = await self._live.ledger.add(self.record.user_id, self.record.call_id,
                                                    event_id, usage.total, cost,
                                                    self.policy.budgets)  # fmt: skip
                break
            except STORE_ERRORS:
                if time.monotonic() - started > RECOUNT_FOR:
                    self._live.metrics.call_usage_lost.inc()
                    log.error("usage not counted: store unavailable",
                              extra={"fields": {"call": self.record.call_id}})  # fmt: skip
                    return None
                await asyncio.sleep(pause)  # backoff before the retry, not a sync wait
                pause = min(pause * 2, 2.0)
        if spent is None:  # this event was counted already
            return None
        self._count(usage, cost, price is None)
        if any(s.exhausted for s in spent):
            await self._live.budget_spent(self.record.user_id)
        return None

    def _count(self, usage: Usage, cost: int, unpriced: bool) -> None:
        metrics = self._live.metrics
        self.tally.tokens += usage.total
        self.tally.cost_micros += cost
        self.tally.responses += 1
        for kind in RATES:
            n = getattr(usage, kind)
            if n:
                self.tally.kinds[kind] = self.tally.kinds.get(kind, 0) + n
                metrics.call_tokens.labels(kind).inc(n)
        metrics.call_cost.inc(cost / 1_000_000)
        if unpriced:
            metrics.call_unpriced.inc()

    async def hang_up(self, reason: str, ws: aiohttp.ClientWebSocketResponse | None = None) -> str:
        """End the call upstream for ``reason`` (recorded first, so any replica sees why)."""
        self._owner_check()
        with contextlib.suppress(*STORE_ERRORS):
            await self._live.registry.mark(self.record.call_id, reason)
        await self._live.upstream.hangup(self.record.call_id)
        if ws is not None:
            await ws.close()
        return reason

    async def cut(self) -> None:
        """A budget of the user's is spent: cancel the responses in flight, and any that
        starts from now on (the call is being hung up meanwhile). The sideband stays open
        so that what they had used is still counted."""
        self.cutting = True  # (set already when asked by LiveCalls)
        if self._ws is not None:
            await self._cancel(self._ws, sorted(self._in_flight))

    async def _cancel(self, ws: aiohttp.ClientWebSocketResponse, response_ids: list[str]) -> None:
        if ws.closed or not self._live.holds(self.record.call_id):
            return
        for response_id in response_ids:
            event = {"type": "response.cancel", "response_id": response_id,
                     "event_id": f"tokenbroker_cancel_{secrets.token_hex(8)}"}  # fmt: skip
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps(event))
        self._live.metrics.call_cancels.inc(len(response_ids))

    def _owner_check(self) -> None:
        if not self._live.holds(self.record.call_id):
            raise LeaseLapsed(self.record.call_id)

    async def _recorded_reason(self, otherwise: str) -> str:
        """Why the call ended, as whoever ended it recorded (client, budget, operator)."""
        try:
            current = await self._live.registry.get(self.record.call_id)
        except STORE_ERRORS:
            return otherwise
        return current.end_reason if current is not None and current.end_reason else otherwise
