"""One Realtime call, watched through its sideband (``{url}/realtime?call_id=…``) over
the shared lifecycle (flow/watcher.py: reconnects, duration and idle caps, lease checks).

This family's events: drift (``session.created``/``session.updated`` outside the policy:
reverted with a ``session.update`` or hung up; a revert the upstream refuses hangs up
too), usage (each ``response.done`` added once to the user's budgets; a spent budget
hangs up all the user's calls, and its responses in flight are cancelled).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
from typing import TYPE_CHECKING, Any

from tokenbroker.families.realtime.drift import revert, violations
from tokenbroker.families.realtime.upstream import CallsUpstream
from tokenbroker.families.realtime.usage import usage_of
from tokenbroker.flow.watcher import MAX_REVERTS, SidebandWatch, Socket
from tokenbroker.limits.usage import RATES, Usage
from tokenbroker.registry.registry import CallRecord

if TYPE_CHECKING:
    from tokenbroker.flow.watched import LiveCalls

log = logging.getLogger("tokenbroker.calls")


class CallWatch(SidebandWatch):
    def __init__(self, record: CallRecord, live: LiveCalls, upstream: CallsUpstream) -> None:
        super().__init__(record, live)
        self._upstream = upstream
        self._reverts_sent: set[str] = set()  # the event ids of this watcher's reverts
        self._in_flight: set[str] = set()  # the call's responses not done yet

    async def attach(self) -> Socket:
        return await self._upstream.sideband(self.record.call_id)

    async def gone(self) -> str:
        """No call unwatched: whatever the upstream says, it is asked to hang up."""
        why = await self.recorded_reason("upstream")
        self.owner_check()
        await self._upstream.hangup(self.record.call_id)
        return why

    async def lost(self) -> str:
        return await self.end("upstream")

    async def event(self, event: dict[str, Any], ws: Socket) -> str | None:
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
            await self._usage(event)
            return None
        if kind == "error":
            error: dict[str, Any] = event["error"] if isinstance(event.get("error"), dict) else {}
            log.info("call error event", extra={"fields": {"call": self.record.call_id,
                     "code": error.get("code")}})  # fmt: skip
            if str(error.get("event_id")) in self._reverts_sent:  # the policy stays broken
                log.info("call drifted", extra={"fields": {"call": self.record.call_id,
                         "refused": error.get("code"), "action": "hangup"}})  # fmt: skip
                return await self.end("violation", ws)
        return None

    async def _check_session(self, session: dict[str, Any], ws: Socket) -> str | None:
        policy = self.policy
        bad = violations(policy, self.record.session, session)
        if not bad:
            return None
        update = revert(policy, self.record.session, bad)
        give_up = self.tally.reverts >= MAX_REVERTS
        if policy.calls.on_violation == "hangup" or update is None or give_up:
            log.info("call drifted", extra={"fields": {"call": self.record.call_id,
                     "fields": bad, "action": "hangup"}})  # fmt: skip
            return await self.end("violation", ws)
        self.owner_check()
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

    async def _usage(self, event: dict[str, Any]) -> None:
        usage = usage_of(event)
        if usage is None:
            return
        response = event.get("response") or {}
        event_id = event.get("event_id") or response.get("id")
        if not isinstance(event_id, str) or not event_id:
            return
        price = self._live.price(self.record.session.get("model"))
        cost = usage.cost_micros(price) if price is not None else 0
        record, ledger = self.record, self._live.ledger
        spent = await self.counted(lambda: ledger.add(
            record.user_id, record.call_id, event_id, usage.total, cost, self.policy.budgets
        ))  # fmt: skip
        if spent is None:  # this event was counted already (or could not be)
            return
        self._count(usage, cost, price is None)
        await self.spent(spent)

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

    async def end(self, reason: str, ws: Socket | None = None) -> str:
        await self.mark(reason)
        await self._upstream.hangup(self.record.call_id)
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

    async def _cancel(self, ws: Socket, response_ids: list[str]) -> None:
        if ws.closed or not self._live.holds(self.record.call_id):
            return
        for response_id in response_ids:
            event = {"type": "response.cancel", "response_id": response_id,
                     "event_id": f"tokenbroker_cancel_{secrets.token_hex(8)}"}  # fmt: skip
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps(event))
        self._live.metrics.call_cancels.inc(len(response_ids))


def watch_call(record: CallRecord, live: LiveCalls, *, upstream: CallsUpstream) -> CallWatch:
    """The family's watch factory (``LiveCalls.add_family``)."""
    return CallWatch(record, live, upstream)
