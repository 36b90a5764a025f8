"""What every API family's watcher shares: one call or session, watched from the server
side for its whole life through its sideband (tokenbroker.families: each family's events).

The lifecycle is the same for all: the sideband opened and re-opened while it breaks
(given up after RECONNECT_FOR), the duration cap and idle timeout, a normal close read
as the call's end, usage counted with retries while the store does not take it (each
figure's id makes a retry safe), the end recorded once. Cancelling the watcher (hand-over,
lost lease) closes the sideband without ending the call. Every enforcing action checks
that this replica still holds the call's lease (:meth:`LiveCalls.holds`) first; one that
does not stops watching instead (:class:`LeaseLapsed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from tokenbroker.infra.redis import STORE_ERRORS
from tokenbroker.limits.ledger import Spent
from tokenbroker.policy.model import Policy
from tokenbroker.registry.notices import user_tag
from tokenbroker.registry.registry import CallRecord
from tokenbroker.upstream.sideband import SidebandGone

if TYPE_CHECKING:
    from tokenbroker.flow.watched import LiveCalls

log = logging.getLogger("tokenbroker.calls")
MAX_REVERTS = 20  # a client that keeps drifting after this many reverts is hung up
RECONNECT_FOR = 30.0  # seconds a broken sideband is retried before the call is given up
RECOUNT_FOR = 60.0  # seconds a usage the store did not take is retried (ids make it safe)
Socket = aiohttp.ClientWebSocketResponse


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


class SidebandWatch:
    """One watched call; a family gives its sideband (:meth:`attach`), its events
    (:meth:`event`), how it ends one (:meth:`end`) and what ``cut`` does."""

    def __init__(self, record: CallRecord, live: LiveCalls) -> None:
        self.record = record
        self.tally = Tally()
        self.user_tag = user_tag(record.user_id)
        self.cutting = False  # a budget is spent: every response is cancelled on sight
        self._live = live
        self._ws: Socket | None = None  # while attached
        self._last_event = time.time()

    @property
    def policy(self) -> Policy:
        """The call's policy as it is now (a policy change reaches live calls)."""
        return self._live.policy_for(self.record)

    # what a family gives
    async def attach(self) -> Socket:
        """The call's sideband; SidebandGone when the upstream has no such call."""
        raise NotImplementedError

    async def event(self, event: dict[str, Any], ws: Socket) -> str | None:
        """One event from the sideband; the call's end reason once it must end."""
        raise NotImplementedError

    async def end(self, reason: str, ws: Socket | None = None) -> str:
        """End the call upstream for ``reason`` (recorded first, so any replica sees why)."""
        raise NotImplementedError

    async def gone(self) -> str:
        """The upstream refused the sideband: the call is over (or was never there)."""
        return await self.recorded_reason("upstream")

    async def lost(self) -> str:
        """The sideband stayed broken for RECONNECT_FOR."""
        return await self.recorded_reason("upstream")

    async def cut(self) -> None:
        raise NotImplementedError

    # the lifecycle
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
                ws = await self.attach()
            except SidebandGone:  # ended already, or refused to this key
                return await self.gone()
            except (aiohttp.ClientError, TimeoutError, OSError):
                broken_since = broken_since or time.monotonic()
                if time.monotonic() - broken_since > RECONNECT_FOR:
                    return await self.lost()
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

    async def _session(self, ws: Socket) -> str | None:
        """Events until the call ends (its reason) or the sideband breaks (None)."""
        rules = self.policy.calls
        while True:
            wake = self.record.deadline
            if rules.idle_timeout is not None:
                wake = min(wake, self._last_event + rules.idle_timeout)
            try:
                message = await ws.receive(timeout=max(wake - time.time(), 0.0))
            except TimeoutError:
                if time.time() >= self.record.deadline:
                    return await self.end("duration", ws)
                if rules.idle_timeout is not None and (
                    time.time() >= self._last_event + rules.idle_timeout
                ):
                    return await self.end("idle", ws)
                continue
            if message.type == aiohttp.WSMsgType.TEXT:
                self._last_event = time.time()
                try:
                    event: Any = json.loads(message.data)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    reason = await self.event(event, ws)
                    if reason is not None:
                        return reason
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                  aiohttp.WSMsgType.CLOSING):  # fmt: skip
                if ws.close_code == 1000:  # the upstream ended the call
                    return await self.recorded_reason("client")
                return None
            elif message.type == aiohttp.WSMsgType.ERROR:
                return None

    async def counted(
        self, count: Callable[[], Awaitable[list[Spent] | None]]
    ) -> list[Spent] | None:
        """``count()``'s answer, retried with backoff while the store does not take it (a
        figure's id makes it count once however often it is sent); None, counted as
        lost, after RECOUNT_FOR."""
        started, pause = time.monotonic(), 0.05
        while True:
            try:
                return await count()
            except STORE_ERRORS:
                if time.monotonic() - started > RECOUNT_FOR:
                    self._live.metrics.call_usage_lost.inc()
                    log.error("usage not counted: store unavailable",
                              extra={"fields": {"call": self.record.call_id}})  # fmt: skip
                    return None
                await asyncio.sleep(pause)  # backoff before the retry, not a sync wait
                pause = min(pause * 2, 2.0)

    async def spent(self, spent: list[Spent] | None) -> None:
        """A budget the figure spent ends the user's calls, on every replica."""
        if spent is not None and any(s.exhausted for s in spent):
            await self._live.budget_spent(self.record.user_id)

    def owner_check(self) -> None:
        if not self._live.holds(self.record.call_id):
            raise LeaseLapsed(self.record.call_id)

    async def mark(self, reason: str) -> None:
        """Record why the call ends, for whichever replica sees it end."""
        self.owner_check()
        with contextlib.suppress(*STORE_ERRORS):
            await self._live.registry.mark(self.record.call_id, reason)

    async def recorded_reason(self, otherwise: str) -> str:
        """Why the call ended, as whoever ended it recorded (client, budget, operator)."""
        try:
            current = await self._live.registry.get(self.record.call_id)
        except STORE_ERRORS:
            return otherwise
        return current.end_reason if current is not None and current.end_reason else otherwise


# What a family registers with this replica's calls (LiveCalls.add_family): how one of its
# calls is watched, and how it is ended upstream by id (False if the upstream did not take it).
WatchFactory = Callable[[CallRecord, "LiveCalls"], SidebandWatch]
Ender = Callable[[str], Awaitable[bool]]
