"""One GPT-Live session, watched from the server side for its whole life.

The watcher holds the session's sideband (``…/live/sessions/{id}/attach``) and enforces
the policy: the duration cap and idle timeout (``session.close``), budgets in seconds and
dollars from the cumulative usage figures (counted once in Redis whoever sees them:
repeated figures and those seen again after an adoption add nothing), the delegated
backend's tokens (once per response), and drift of what ``session.update`` can still
change (the delegation, triggers): reverted or closed per ``on_violation``. A broken
sideband is re-opened; the session's ``session.closed`` (or a normal close) ends it.
It is registered, leased, adopted and handed over like a Realtime call (flow/watched.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from tokenbroker.families.live.sideband import LiveSideband
from tokenbroker.families.live.usage import backend_usage, cumulative, voice_cost_micros
from tokenbroker.flow.watcher import RECONNECT_FOR, RECOUNT_FOR, LeaseLapsed, Tally
from tokenbroker.infra.redis import STORE_ERRORS
from tokenbroker.limits.ledger import Spent
from tokenbroker.registry.notices import user_tag
from tokenbroker.registry.registry import CallRecord
from tokenbroker.upstream.calls import SidebandGone

if TYPE_CHECKING:
    from tokenbroker.flow.watched import LiveCalls

log = logging.getLogger("tokenbroker.calls")
CLOSED_REASONS = {"close_requested": "client", "expired": "duration", "content": "upstream",
                  "remote_hangup": "hangup", "connection_lost": "upstream"}  # fmt: skip
FINAL_WAIT = 5.0  # seconds a closing watcher waits for session.closed (the final usage)
MAX_REVERTS = 20


class SessionWatch:
    def __init__(self, record: CallRecord, live: LiveCalls, sideband: LiveSideband,
                 prices: Mapping[str, Mapping[str, float]]) -> None:  # fmt: skip
        self.record = record
        self.tally = Tally()
        self.user_tag = user_tag(record.user_id)
        self.cutting = False
        self._live = live
        self._sideband = sideband
        self._prices = prices
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._last_event = time.time()
        self._closing = False

    async def run(self) -> None:
        try:
            reason = await self._watch()
        except LeaseLapsed:
            return
        except Exception:
            log.exception("session watcher failed", extra={"fields": {"call": self.record.call_id}})
            await self._live.give_back(self)
            return
        await self._live.finished(self, reason)

    def _owner_check(self) -> None:
        if not self._live.holds(self.record.call_id):
            raise LeaseLapsed(self.record.call_id)

    async def _watch(self) -> str:
        broken_since: float | None = None
        backoff = 0.1
        while True:
            try:
                ws = await self._sideband.attach(self.record.call_id)
            except SidebandGone:  # closed already, or never there
                return await self._recorded_reason("upstream")
            except (aiohttp.ClientError, TimeoutError, OSError):
                broken_since = broken_since or time.monotonic()
                if time.monotonic() - broken_since > RECONNECT_FOR:
                    return await self._recorded_reason("upstream")
                await asyncio.sleep(backoff)  # backoff between attempts, not a sync wait
                backoff = min(backoff * 2, 2.0)
                continue
            broken_since, backoff = None, 0.1
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
        rules = self._live.policy_for(self.record).calls
        while True:
            wake = self.record.deadline
            if rules.idle_timeout is not None:
                wake = min(wake, self._last_event + rules.idle_timeout)
            try:
                message = await ws.receive(timeout=max(wake - time.time(), 0.0))
            except TimeoutError:
                if time.time() >= self.record.deadline:
                    return await self.close("duration", ws)
                if rules.idle_timeout is not None and (
                    time.time() >= self._last_event + rules.idle_timeout
                ):
                    return await self.close("idle", ws)
                continue
            if message.type == aiohttp.WSMsgType.TEXT:
                self._last_event = time.time()
                reason = await self._event(message.data, ws)
                if reason is not None:
                    return reason
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                  aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):  # fmt: skip
                if ws.close_code == 1000:  # the upstream ended the session
                    return await self._recorded_reason("client")
                return None

    async def _event(self, data: str, ws: aiohttp.ClientWebSocketResponse) -> str | None:
        try:
            event: Any = json.loads(data)
        except ValueError:
            return None
        if not isinstance(event, dict):
            return None
        kind = event.get("type")
        if kind in ("session.usage.updated", "session.closed"):
            await self._usage(event)
        if kind == "session.closed":
            closed = CLOSED_REASONS.get(str(event.get("reason")), "upstream")
            return await self._recorded_reason(closed)
        if kind == "response.event":
            await self._backend(event)
        elif kind == "session.updated" and isinstance(event.get("session"), dict):
            return await self._check(event["session"], ws)
        return None

    async def _usage(self, event: dict[str, Any]) -> None:
        usage = cumulative(event)
        if usage is None:
            return
        model = str(self.record.session.get("model"))
        cost = voice_cost_micros(usage, self._prices.get(model))
        budgets = self._live.policy_for(self.record).budgets
        spent = await self._counted(lambda: self._live.ledger.add_cumulative(
            self.record.user_id, self.record.call_id, usage.seconds, cost, budgets))  # fmt: skip
        self.tally.seconds = max(self.tally.seconds, usage.seconds)
        self.tally.cost_micros = max(self.tally.cost_micros, cost)
        if spent is not None and any(s.exhausted for s in spent):
            await self._live.budget_spent(self.record.user_id)

    async def _counted(
        self, count: Callable[[], Awaitable[list[Spent] | None]]
    ) -> list[Spent] | None:
        """``count()``'s answer, retried with backoff while the store does not take it (a
        cumulative figure or a response id counts once however often it is sent); None,
        counted as lost, after RECOUNT_FOR."""
        started, pause = time.monotonic(), 0.05
        while True:
            try:
                return await count()
            except STORE_ERRORS:
                if time.monotonic() - started > RECOUNT_FOR:
                    self._live.metrics.call_usage_lost.inc()
                    return None
                await asyncio.sleep(pause)  # backoff before the retry, not a sync wait
                pause = min(pause * 2, 2.0)

    async def _backend(self, event: dict[str, Any]) -> None:
        delegation = self.record.session.get("delegation") or {}
        default = str((delegation.get("responses") or {}).get("model", ""))
        usage = backend_usage(event, default)
        if usage is None:
            return
        cost = usage.cost_micros(self._live.price(usage.model))
        spent = await self._counted(lambda: self._live.ledger.add(
            self.record.user_id, self.record.call_id, usage.response_id, usage.total, cost,
            self._live.policy_for(self.record).budgets))  # fmt: skip
        if spent is None:
            return
        self.tally.tokens += usage.total
        self.tally.responses += 1
        self.tally.cost_micros += cost
        if any(s.exhausted for s in spent):
            await self._live.budget_spent(self.record.user_id)

    async def _check(
        self, session: dict[str, Any], ws: aiohttp.ClientWebSocketResponse
    ) -> str | None:
        """Drift of what can change after start-up: the delegation and the triggers."""
        enforced = self.record.session
        drifted = [key for key in ("delegation", "triggers")
                   if not _same(key, session.get(key), enforced.get(key))]  # fmt: skip
        if not drifted:
            return None
        policy = self._live.policy_for(self.record)
        log.info("session drifted", extra={"fields": {"call": self.record.call_id,
                 "fields": drifted}})  # fmt: skip
        if policy.calls.on_violation == "hangup" or self.tally.reverts >= MAX_REVERTS:
            return await self.close("violation", ws)
        self._owner_check()
        self.tally.reverts += 1
        self._live.metrics.call_reverts.labels("live").inc()
        update = {key: enforced.get(key, [] if key == "triggers" else None) for key in drifted}
        event_id = f"tokenbroker_revert_{secrets.token_hex(8)}"
        await ws.send_str(json.dumps({"type": "session.update", "session": update,
                                      "event_id": event_id}))  # fmt: skip
        return None

    async def close(self, reason: str, ws: aiohttp.ClientWebSocketResponse) -> str:
        """End the session for ``reason`` (recorded first, so any replica sees why), and
        read on until the upstream's ``session.closed`` brings the final usage."""
        self._owner_check()
        with contextlib.suppress(*STORE_ERRORS):
            await self._live.registry.mark(self.record.call_id, reason)
        await ws.send_str(json.dumps({"type": "session.close"}))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FINAL_WAIT):
                while not ws.closed:
                    message = await ws.receive()
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    with contextlib.suppress(ValueError):
                        event = json.loads(message.data)
                        if isinstance(event, dict) and event.get("type") == "session.closed":
                            await self._usage(event)
                            break
        return reason

    async def cut(self) -> None:
        """A budget of the user's is spent: close the session now (its hang-up through the
        registry comes too; a second session.close is harmless)."""
        self.cutting = True
        ws = self._ws
        if ws is not None and not ws.closed and self._live.holds(self.record.call_id):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps({"type": "session.close"}))

    async def _recorded_reason(self, otherwise: str) -> str:
        try:
            current = await self._live.registry.get(self.record.call_id)
        except STORE_ERRORS:
            return otherwise
        return current.end_reason if current is not None and current.end_reason else otherwise


def _same(key: str, now: Any, enforced: Any) -> bool:
    """Whether the session's ``key`` is still what the broker created it with (no triggers
    and an empty list are the same; so are no delegation and the default, client)."""
    if key == "triggers":
        return bool((now or []) == (enforced or []))
    return bool(now == enforced or (enforced is None and now in (None, {"type": "client"})))


def watch_session(
    record: CallRecord, live: LiveCalls, *, sideband: LiveSideband,
    prices: Mapping[str, Mapping[str, float]],
) -> SessionWatch:  # fmt: skip
    """The family's watch factory (``LiveCalls.add_family``)."""
    return SessionWatch(record, live, sideband, prices)
