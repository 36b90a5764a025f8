"""This replica's live calls: a watcher per call it owns, leases renewed, orphans adopted.

Every ``calls.renew_interval`` the replica renews the leases of the calls it watches (a
call it no longer owns is let go without ending it) and claims calls whose lease ran
out: those of a replica that died, or that handed its calls over on SIGTERM.

A replica that cannot renew (Redis frozen or unreachable) stops acting as owner before
its leases can run out: it holds each call until the time it last asked for that call's
lease (register, claim or renewal) plus the lease, less ``renew_interval``; the lease in
Redis starts no earlier than the asking, so the hold always ends first. At the end of
its hold a call's watcher is cancelled (its sideband closed, the call left alone) and
every enforcing action checks the hold first, so no other replica can have claimed the
call while this one still acts on it: a call is never watched twice. Ending a
call is one method whatever asks for it (the owner over HTTP, a spent budget, an
operator): the reason is recorded in the registry, the upstream hangs up, and the
watching replica, wherever it is, sees the sideband close and records the end once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from functools import partial
from typing import Any

from tokenbroker.config.settings import CallsSettings
from tokenbroker.flow.context import hash_user
from tokenbroker.flow.watcher import Ender, SidebandWatch, WatchFactory
from tokenbroker.infra.audit import AuditTrail
from tokenbroker.infra.metrics import Metrics
from tokenbroker.infra.redis import STORE_ERRORS
from tokenbroker.limits.ledger import UsageLedger
from tokenbroker.policy.cache import PolicyCache
from tokenbroker.policy.model import Policy
from tokenbroker.registry.notices import LocalNotices, SpentNotices, user_tag
from tokenbroker.registry.registry import CallRecord, CallRegistry

log = logging.getLogger("tokenbroker.calls")


class LiveCalls:
    def __init__(
        self,
        replica: str,
        registry: CallRegistry,
        ledger: UsageLedger,
        policies: PolicyCache,
        settings: CallsSettings,
        metrics: Metrics,
        audit: AuditTrail,
        notices: SpentNotices | None = None,
    ) -> None:
        self.replica = replica
        self.registry = registry
        self.ledger = ledger
        self.metrics = metrics
        self._policies = policies
        self._settings = settings
        self._audit = audit
        self.lease = settings.lease
        self._prices = {model: price.model_dump() for model, price in settings.prices.items()}
        self._watches: dict[str, asyncio.Task[None]] = {}
        self._watchers: dict[str, SidebandWatch] = {}  # the same calls' watchers
        # per API family (tokenbroker.families): how its calls are watched and ended
        self._factories: dict[str, WatchFactory] = {}
        self._enders: dict[str, Ender] = {}
        self._notices = notices or LocalNotices()
        self._ending: dict[str, float] = {}  # user -> until when their calls are being ended
        self._held: dict[str, float] = {}  # call id -> until when (monotonic) it is ours
        self._loose: set[asyncio.Task[Any]] = set()
        self._closing = False  # handing over: adopt nothing more, not even its own calls

    def _count(self, api: str) -> int:
        return sum(watch.record.api == api for watch in self._watchers.values())

    @property
    def full(self) -> bool:
        return len(self._watches) >= self._settings.max_per_replica

    def policy_for(self, record: CallRecord) -> Policy:
        """The call's policy as it is now (a policy change reaches live calls); the default
        policy if its policy was removed."""
        policies = self._policies.policies
        assert policies is not None  # calls exist only once policies are loaded
        return policies.policies.get(record.policy) or policies.policies[policies.default_policy]

    def price(self, model: Any) -> dict[str, float] | None:
        return self._prices.get(str(model))

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Hold a fire-and-forget task until it is done (the loop keeps only weak refs)."""
        self._loose.add(task)
        task.add_done_callback(self._loose.discard)

    def add_family(self, api: str, factory: WatchFactory, ender: Ender) -> None:
        """Watch and end the calls of the API family ``api`` (tokenbroker.families)."""
        self._factories[api], self._enders[api] = factory, ender
        self.metrics.live_calls.labels(api).set_function(partial(self._count, api))

    def watch(self, record: CallRecord, asked: float) -> None:
        """Watch ``record``, whose lease was asked for at ``asked`` (``time.monotonic()``
        taken before the registry call that granted it)."""
        self._held[record.call_id] = self._hold_from(asked)
        watch = self._factories[record.api](record, self)
        self._watchers[record.call_id] = watch
        self._watches[record.call_id] = asyncio.ensure_future(watch.run())

    def _forget(self, call_id: str) -> asyncio.Task[None] | None:
        """Out of this replica's books; the call's task, if it had one."""
        self._held.pop(call_id, None)
        self._watchers.pop(call_id, None)
        return self._watches.pop(call_id, None)

    def _hold_from(self, asked: float) -> float:
        return asked + self._settings.lease - self._settings.renew_interval

    def holds(self, call_id: str) -> bool:
        """Whether this replica may still act as the call's owner (its lease cannot have
        run out in Redis yet)."""
        return time.monotonic() < self._held.get(call_id, 0.0)

    def _let_go(self, call_id: str) -> None:
        """Stop watching without ending the call (its sideband closes with the task)."""
        task = self._forget(call_id)
        if task is not None:
            task.cancel()

    async def run(self) -> None:
        """Renew, then adopt, every ``renew_interval``; store errors wait for the next turn.
        Beside it, the holds are kept: a call whose hold ends is let go at once."""
        guard = asyncio.ensure_future(self._keep_holds())
        notices = asyncio.ensure_future(self._notices.listen(self._cut_local))
        try:
            while True:
                try:
                    await self._renew()
                    await self._adopt()
                except STORE_ERRORS as exc:
                    log.warning("live-call registry unavailable (%s)", type(exc).__name__)
                await asyncio.sleep(self._settings.renew_interval)  # the period of the loop
        finally:
            guard.cancel()
            notices.cancel()

    async def _keep_holds(self) -> None:
        """Let go of each call at the end of its hold, whatever the renewal loop is waiting
        on. New holds only end later than those already here, so sleeping until the
        earliest one is never late."""
        while True:
            now = time.monotonic()
            lapsed = [call_id for call_id, until in self._held.items() if until <= now]
            if lapsed:
                self.metrics.call_leases_lapsed.inc(len(lapsed))
                log.warning("live-call leases not renewed in time; letting %d calls go",
                            len(lapsed))  # fmt: skip
            for call_id in lapsed:
                self._let_go(call_id)
            earliest = min(self._held.values(), default=now + self._settings.renew_interval)
            await asyncio.sleep(max(min(earliest - now, self._settings.renew_interval), 0.005))

    async def _renew(self) -> None:
        asked, ids = time.monotonic(), list(self._watches)
        lost = set(await self.registry.renew(self.replica, ids, self._settings.lease))
        hold = self._hold_from(asked)
        for call_id in ids:
            if call_id in lost:  # another replica owns it now: let go without ending it
                self._let_go(call_id)
            elif call_id in self._held:
                self._held[call_id] = max(self._held[call_id], hold)

    async def _adopt(self) -> None:
        room = self._settings.max_per_replica - len(self._watches)
        if room <= 0 or self._closing or self._policies.policies is None:
            return  # full, leaving, or not able to judge calls yet
        asked = time.monotonic()
        claimed = await self.registry.claim(self.replica, self._settings.lease, room)
        if self._closing:  # the hand-over began while the claim was in flight
            await self.registry.handover(self.replica, [r.call_id for r in claimed])
            return
        foreign = [r.call_id for r in claimed if r.api not in self._factories]
        if foreign:  # of an API family this replica does not serve: for another to adopt
            await self.registry.handover(self.replica, foreign)
        for record in claimed:
            if record.call_id in self._watches or record.api not in self._factories:
                continue
            self.metrics.call_adoptions.labels(record.api).inc()
            fields = {"call": record.call_id, "user": hash_user(record.user_id),
                      "from": record.owner or "handover"}  # fmt: skip
            log.info("call adopted", extra={"fields": fields})
            self.watch(record, asked)

    async def give_back(self, watch: SidebandWatch) -> None:
        """Stop watching one call without ending it; any replica (this one too) may adopt it
        at its next turn."""
        call_id = watch.record.call_id
        if self._watches.get(call_id) is asyncio.current_task():
            self._forget(call_id)
        with contextlib.suppress(*STORE_ERRORS):
            await self.registry.handover(self.replica, [call_id])

    async def handover(self) -> int:
        """Stop watching without ending the calls; their leases end now, so another
        replica adopts them at its next turn (this one adopts nothing from now on, or
        it could claim back the calls it just gave up and leave them to a lease)."""
        self._closing = True
        ids = list(self._watches)
        tasks = [task for call_id in ids if (task := self._forget(call_id)) is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            handed = await self.registry.handover(self.replica, ids)
        except STORE_ERRORS:
            handed = 0  # the leases run out by themselves
        if ids:
            log.info("calls handed over", extra={"fields": {"calls": handed}})
        return handed

    async def end(self, record: CallRecord, reason: str) -> bool:
        """Record why the call ends, then ask its family's upstream to end it."""
        if not await self.registry.mark(record.call_id, reason):
            return False
        return await self._enders[record.api](record.call_id)

    async def _end_id(self, call_id: str, reason: str) -> bool:
        record = await self.registry.get(call_id)
        return record is not None and await self.end(record, reason)

    async def budget_spent(self, user_id: str) -> None:
        """A budget of the user's is spent: every live call of theirs stops spending now.

        The watchers here send ``response.cancel`` for the responses in flight at once,
        the other replicas' watchers on a notice (one pub/sub message), and all the user's
        calls are hung up together. What the cancelled responses had used still arrives
        and is counted: the bound on a budget's overrun is what the user's responses use
        before the cancel reaches them (docs: the live-calls guide)."""
        self._cut_local(user_tag(user_id))
        now = time.monotonic()
        if self._ending.get(user_id, 0.0) > now:
            return  # a burst of crossings: the first one is ending the calls already
        self._ending = {u: t for u, t in self._ending.items() if t > now}
        self._ending[user_id] = now + 1.0
        with contextlib.suppress(*STORE_ERRORS):
            await self._notices.announce(user_id)
        ids = await self.registry.user_calls(user_id)
        await asyncio.gather(*(self._end_id(i, "budget") for i in ids), return_exceptions=True)

    def _cut_local(self, tag: str) -> None:
        """The watchers here of the user tagged ``tag`` cancel their responses."""
        cut = 0
        for watch in list(self._watchers.values()):
            if watch.user_tag == tag and not watch.cutting:
                watch.cutting = True
                self.keep(asyncio.ensure_future(watch.cut()))
                cut += 1
        if cut:
            log.info("budget spent: cancelling responses", extra={"fields": {"user": tag,
                     "calls": cut}})  # fmt: skip

    async def finished(self, watch: SidebandWatch, reason: str) -> None:
        """The call is over: out of the registry (its reason and usage kept there for a
        while, for the owner's GET), one log line, one audit entry, counted."""
        record = watch.record
        if self._watches.get(record.call_id) is asyncio.current_task():
            self._forget(record.call_id)
        tally = watch.tally
        summary = {"reason": reason, "ended_at": int(time.time()), "api": record.api,
                   "started_at": int(record.started), "usage": tally.usage()}  # fmt: skip
        try:
            removed = await self.registry.finish(record, summary)
        except STORE_ERRORS:
            removed = True  # the record expires by itself; the end is still this one
        if not removed:
            return  # another replica recorded this call's end
        self.metrics.call_ends.labels(record.api, reason).inc()
        fields = {"call": record.call_id, "user": hash_user(record.user_id),
                  "policy": record.policy, "reason": reason,
                  "seconds": round(time.time() - record.started, 3),
                  "tokens": tally.tokens, "cost_usd": tally.cost_micros / 1_000_000,
                  "responses": tally.responses, "reverts": tally.reverts, "api": record.api,
                  "voice_seconds": tally.seconds}  # fmt: skip
        log.info("call ended", extra={"fields": fields})
        detail = " ".join(f"{k}={fields[k]}" for k in ("call", "api", "reason", "seconds",
                                                        "voice_seconds", "tokens", "cost_usd",
                                                        "reverts"))  # fmt: skip
        self._audit.record({"user": record.user_id, "policy": record.policy,
                            "model": str(record.session.get("model", "")), "voice": "",
                            "outcome": "call_ended", "request_id": record.call_id, "ip": "",
                            "user_agent": "", "detail": detail})  # fmt: skip

    async def stop(self) -> None:
        """On shutdown: hand the calls over (never hang them up)."""
        with contextlib.suppress(Exception):
            await self.handover()
