"""One GPT-Live session, watched from the server side for its whole life.

The watcher holds the session's sideband (``…/live/sessions/{id}/attach``) and enforces
the policy: the duration cap and idle timeout (``session.close``), budgets in seconds and
dollars from the cumulative usage figures (counted once in Redis whoever sees them:
repeated figures and those seen again after an adoption add nothing), the delegated
backend's tokens (once per response), and drift of what ``session.update`` can still
change (the delegation, triggers): reverted or closed per ``on_violation``. A broken
sideband is re-opened; the session's ``session.closed`` (or a normal close) ends it.
It is registered, leased, adopted and handed over like a Realtime call (flow/watched.py),
over the lifecycle every family's watcher shares (flow/watcher.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from tokenbroker.families.live.sideband import LiveSideband
from tokenbroker.families.live.usage import backend_usage, cumulative, voice_cost_micros
from tokenbroker.flow.watcher import MAX_REVERTS, SidebandWatch, Socket
from tokenbroker.registry.registry import CallRecord

if TYPE_CHECKING:
    from tokenbroker.flow.watched import LiveCalls

log = logging.getLogger("tokenbroker.calls")
CLOSED_REASONS = {"close_requested": "client", "expired": "duration", "content": "upstream",
                  "remote_hangup": "hangup", "connection_lost": "upstream"}  # fmt: skip
FINAL_WAIT = 5.0  # seconds a closing watcher waits for session.closed (the final usage)


class SessionWatch(SidebandWatch):
    def __init__(self, record: CallRecord, live: LiveCalls, sideband: LiveSideband,
                 prices: Mapping[str, Mapping[str, float]]) -> None:  # fmt: skip
        super().__init__(record, live)
        self._sideband = sideband
        self._prices = prices

    async def attach(self) -> Socket:
        return await self._sideband.attach(self.record.call_id)

    async def event(self, event: dict[str, Any], ws: Socket) -> str | None:
        kind = event.get("type")
        if kind in ("session.usage.updated", "session.closed"):
            await self._usage(event)
        if kind == "session.closed":
            closed = CLOSED_REASONS.get(str(event.get("reason")), "upstream")
            return await self.recorded_reason(closed)
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
        budgets = self.policy.budgets
        spent = await self.counted(lambda: self._live.ledger.add_cumulative(
            self.record.user_id, self.record.call_id, usage.seconds, cost, budgets))  # fmt: skip
        self.tally.seconds = max(self.tally.seconds, usage.seconds)
        self.tally.cost_micros = max(self.tally.cost_micros, cost)
        await self.spent(spent)

    async def _backend(self, event: dict[str, Any]) -> None:
        delegation = self.record.session.get("delegation") or {}
        default = str((delegation.get("responses") or {}).get("model", ""))
        usage = backend_usage(event, default)
        if usage is None:
            return
        cost = usage.cost_micros(self._live.price(usage.model))
        spent = await self.counted(lambda: self._live.ledger.add(
            self.record.user_id, self.record.call_id, usage.response_id, usage.total, cost,
            self.policy.budgets))  # fmt: skip
        if spent is None:
            return
        self.tally.tokens += usage.total
        self.tally.responses += 1
        self.tally.cost_micros += cost
        await self.spent(spent)

    async def _check(self, session: dict[str, Any], ws: Socket) -> str | None:
        """Drift of what can change after start-up: the delegation and the triggers."""
        enforced = self.record.session
        drifted = [key for key in ("delegation", "triggers")
                   if not _same(key, session.get(key), enforced.get(key))]  # fmt: skip
        if not drifted:
            return None
        policy = self.policy
        log.info("session drifted", extra={"fields": {"call": self.record.call_id,
                 "fields": drifted}})  # fmt: skip
        if policy.calls.on_violation == "hangup" or self.tally.reverts >= MAX_REVERTS:
            return await self.end("violation", ws)
        self.owner_check()
        self.tally.reverts += 1
        self._live.metrics.call_reverts.labels("live").inc()
        update = {key: enforced.get(key, [] if key == "triggers" else None) for key in drifted}
        event_id = f"tokenbroker_revert_{secrets.token_hex(8)}"
        await ws.send_str(json.dumps({"type": "session.update", "session": update,
                                      "event_id": event_id}))  # fmt: skip
        return None

    async def end(self, reason: str, ws: Socket | None = None) -> str:
        """End the session for ``reason`` (recorded first, so any replica sees why), and
        read on until the upstream's ``session.closed`` brings the final usage."""
        await self.mark(reason)
        if ws is None:
            await self._sideband.end(self.record.call_id)
            return reason
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
