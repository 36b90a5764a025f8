"""Auto-pipelining for one Lua script: calls made in the same event-loop turn share one
round trip.

Each call is still its own EVALSHA (its own atomic step in Redis); only the network
round trip and redis-py's per-command overhead are shared. Under concurrency this cut
the broker's Redis cost per mint substantially (see README, Performance); a lone call
pays one extra loop turn, and goes as a plain EVALSHA (a one-command pipeline costs
redis-py ~50 µs more).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import NoScriptError, ResponseError


class ScriptBatcher:
    def __init__(self, client: Any, source: str) -> None:
        self._client = client
        self._source = source
        self._sha: str | None = None
        self._pending: list[tuple[list[Any], list[Any], asyncio.Future[Any]]] = []

    async def __call__(self, keys: list[Any], args: list[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, args, future))
        if len(self._pending) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _send(self, batch: list[tuple[list[Any], list[Any], asyncio.Future[Any]]]) -> None:
        try:
            if self._sha is None:
                self._sha = await self._client.script_load(self._source)
            replies = await self._execute(batch)
            if any(isinstance(r, NoScriptError) for r in replies):  # Redis restarted
                self._sha = await self._client.script_load(self._source)
                replies = await self._execute(batch)
        except BaseException as exc:  # every waiter must hear about it
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _execute(self, batch: list[tuple[list[Any], list[Any], Any]]) -> list[Any]:
        """Replies in call order; an error reply is returned, as the pipeline returns it."""
        if len(batch) == 1:
            keys, args, _ = batch[0]
            try:
                return [await self._client.evalsha(self._sha, len(keys), *keys, *args)]
            except ResponseError as exc:  # NoScriptError included
                return [exc]
        async with self._client.pipeline(transaction=False) as pipe:
            for keys, args, _ in batch:
                pipe.evalsha(self._sha, len(keys), *keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies
