"""The fake upstream's load hooks for calls: responses that finish over time and can be
cancelled (``POST /_fake/responses``), and a burst of ``response.done`` events
(``POST /_fake/burst``), as the module docstring of :mod:`.calls` describes them."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokenbroker.fake_upstream import events

if TYPE_CHECKING:
    from tokenbroker.fake_upstream.calls import FakeCall


class CallLoad:
    """Mixed into FakeCalls: ``calls``, ``_tasks`` and ``_broadcast`` are its."""

    calls: dict[str, FakeCall]
    _tasks: set[asyncio.Task[None]]

    async def _broadcast(self, call: FakeCall, event: dict[str, Any]) -> int:
        raise NotImplementedError

    async def _responses(self, call: FakeCall, count: int, tokens: int, every: float,
                         cancelled_tokens: int) -> None:  # fmt: skip
        """The page started ``count`` responses at once; they finish one by one."""
        ids = [events.response_id() for _ in range(count)]
        for rid in ids:
            call.in_flight[rid] = cancelled_tokens
            await self._broadcast(call, events.response_created(rid))
        for rid in ids:
            await asyncio.sleep(every)  # the model's pace, what this hook plays
            if not call.live:
                call.in_flight.clear()  # hung up: nothing more is reported
                return
            if call.in_flight.pop(rid, None) is not None:
                call.completed += 1
                if await self._broadcast(call, events.response_done(tokens, 0, rid)):
                    call.reported_tokens += tokens  # reported: a sideband got it

    async def _cancel(self, call: FakeCall, rid: Any) -> None:
        call.cancel_times.append(time.time())
        ids = [rid] if isinstance(rid, str) and call.live else list(call.in_flight)
        for one in ids:
            used = call.in_flight.pop(one, None)
            if used is not None and call.live:
                call.cancelled += 1
                if await self._broadcast(call, events.response_done(used, 0, one, "cancelled")):
                    call.reported_tokens += used

    async def burst(self, request: Request) -> Response:
        body = await request.json()
        count, tokens = int(body["events"]), int(body.get("tokens", 10))
        targets = [c for c in self.calls.values() if c.live and c.sockets]
        started, sent = time.perf_counter(), 0
        for i in range(count if targets else 0):
            call = targets[i % len(targets)]
            sent += await self._broadcast(call, events.response_done(tokens, 0))
        return JSONResponse({"sent": sent, "seconds": time.perf_counter() - started})

    async def responses(self, request: Request) -> Response:
        body = await request.json()
        pace = float(body.get("every_ms", 1)) / 1000
        calls = [self.calls[c] for c in body["calls"] if c in self.calls]
        for call in calls:
            task = asyncio.ensure_future(self._responses(
                call, int(body["count"]), int(body["tokens"]), pace,
                int(body.get("cancelled_tokens", 0))))  # fmt: skip
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return JSONResponse({"calls": len(calls)})
