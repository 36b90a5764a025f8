"""What a request needs at run time: the broker, each API family's flows (as the HTTP
layer sees them), live calls, the operator actions, readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tokenbroker.config.settings import Settings
from tokenbroker.flow.calls import CallReply
from tokenbroker.flow.context import RequestContext
from tokenbroker.flow.mint import Broker, MintReply
from tokenbroker.flow.operations import Operations
from tokenbroker.flow.watched import LiveCalls
from tokenbroker.infra.audit import AuditTrail

MintFlow = Callable[[Sequence[str], bytes, RequestContext], Awaitable[MintReply]]


class CallFamily(Protocol):
    """An API family's WebRTC calls on the calls endpoints (the Realtime API's)."""

    async def create(
        self, authorization: Sequence[str], sdp: Any, session: Any, log: RequestContext
    ) -> CallReply: ...
    async def info(
        self, authorization: Sequence[str], call_id: str, log: RequestContext
    ) -> dict[str, Any]: ...
    async def hang_up(
        self, authorization: Sequence[str], call_id: str, log: RequestContext
    ) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class FamilyReply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class SessionFamily(Protocol):
    """An API family's sessions as the HTTP layer sees them (tokenbroker.families)."""

    async def create(
        self, authorization: Sequence[str], raw: bytes, log: RequestContext
    ) -> FamilyReply: ...
    async def info(
        self, authorization: Sequence[str], session_id: str, log: RequestContext
    ) -> dict[str, Any]: ...
    async def end(
        self, authorization: Sequence[str], session_id: str, log: RequestContext
    ) -> dict[str, Any]: ...


@dataclass
class Runtime:
    broker: Broker
    settings: Settings
    operations: Operations
    audit: AuditTrail
    store_ping: Callable[[], Awaitable[bool]] | None = None
    mints: dict[str, MintFlow] = field(default_factory=dict)  # by path: client secrets
    calls: CallFamily | None = None  # the calls endpoints (Realtime's)
    live: LiveCalls | None = None
    families: dict[str, SessionFamily] = field(default_factory=dict)  # "live": GPT-Live
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    draining: bool = False

    async def ready(self) -> tuple[bool, str]:
        """Whether this replica can mint now, and why not."""
        if self.draining:
            return False, "shutting down"
        if self.broker.policies.policies is None:
            return False, "policies not loaded"
        closed = self.settings.fail_mode == "closed"
        if closed and self.store_ping is not None and not await self.store_ping():
            return False, "rate-limit store unreachable"
        return True, "ok"

    def start(self, *jobs: Awaitable[None]) -> None:
        self.tasks += [asyncio.ensure_future(job) for job in jobs]

    async def stop(self) -> None:
        """Hand the live calls over, flush the audit trail, then stop background tasks."""
        if self.live is not None:
            await self.live.stop()
        await self.audit.flush(5.0)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
