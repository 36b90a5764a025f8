"""The audit trail: one entry per authenticated mint or call attempt and per call end, in a
capped Redis Stream.

Entries are written off the reply path: ``record`` only appends to an in-process buffer;
a background task wakes at most every ``flush_interval`` and writes what gathered, a
batch at a time, each batch one script call (``audit.lua`` runs the XADDs inside Redis:
an entry written alone cost a whole round trip of redis-py CPU, and one XADD per entry
in a pipeline still cost redis-py ~29 µs per entry; this ~6). A batch is kept until
Redis has taken it, so a Redis restart delays entries but does not lose them. The buffer
is bounded (new entries are dropped and counted when it is full); ``flush`` runs on
graceful shutdown. Delivery is at least once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import operator
import time
from collections import deque
from collections.abc import Callable
from importlib import resources
from typing import Any, Protocol

log = logging.getLogger("tokenbroker.audit")
FIELDS = ("user", "policy", "model", "voice", "outcome", "request_id", "ip", "user_agent", "detail")
_VALUES = operator.itemgetter(*FIELDS)


class AuditTrail(Protocol):
    def record(self, entry: dict[str, str]) -> None: ...
    async def run(self) -> None: ...
    async def flush(self, seconds: float) -> None: ...
    async def read(
        self, user: str | None = None, since_ms: int | None = None, count: int = 100
    ) -> list[dict[str, str]]: ...


def _matches(entry: dict[str, str], user: str | None) -> bool:
    return user is None or entry.get("user") == user


class RedisAudit:
    def __init__(
        self,
        client: Any,
        key: str,
        max_entries: int,
        *,
        batch: int = 100,
        buffer_limit: int = 100_000,
        flush_interval: float = 0.0,
        on_fate: Callable[[str, int], None] = lambda fate, n: None,
    ) -> None:
        self._client = client
        self._script = client.register_script(
            resources.files(__package__).joinpath("audit.lua").read_text()
        )
        self.key = key
        self._max_entries = max_entries
        self._batch = batch
        self._buffer_limit = buffer_limit
        self._flush_interval = flush_interval
        self._pending: deque[dict[str, str]] = deque()
        self._wakeup = asyncio.Event()
        self._on_fate = on_fate

    def record(self, entry: dict[str, str]) -> None:
        if len(self._pending) >= self._buffer_limit:
            self._on_fate("dropped", 1)
            return
        self._pending.append(entry)
        self._wakeup.set()

    async def _write_pending(self, retry_pause: float) -> None:
        while self._pending:
            batch = list(itertools.islice(self._pending, self._batch))
            args: list[Any] = [self._max_entries, len(FIELDS), *FIELDS]
            for entry in batch:
                args += _VALUES(entry)
            try:
                await self._script(keys=[self.key], args=args)
            except Exception as exc:  # keep the entries, retry, stay alive
                log.warning(
                    "audit write failed (%s); %d entries wait",
                    type(exc).__name__,
                    len(self._pending),
                )
                await asyncio.sleep(retry_pause)
                continue
            for _ in batch:  # only this task removes entries, so these are the batch
                self._pending.popleft()
            self._on_fate("written", len(batch))

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            if self._flush_interval > 0:
                await asyncio.sleep(self._flush_interval)  # let a batch gather
            self._wakeup.clear()
            await self._write_pending(retry_pause=0.5)

    async def flush(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._write_pending(retry_pause=0.1)
        except TimeoutError:
            log.error("audit flush timed out; %d entries lost", len(self._pending))
            self._on_fate("dropped", len(self._pending))

    async def read(
        self, user: str | None = None, since_ms: int | None = None, count: int = 100
    ) -> list[dict[str, str]]:
        """Newest first, up to ``count`` entries, scanning back at most 100 000 entries."""
        found: list[dict[str, str]] = []
        high = "+"
        low = f"{since_ms}-0" if since_ms is not None else "-"
        scanned = 0
        while len(found) < count and scanned < 100_000:
            rows = await self._client.xrevrange(self.key, max=high, min=low, count=1000)
            if not rows:
                break
            for raw_id, raw in rows:
                entry_id = raw_id.decode()
                entry = {k.decode(): v.decode() for k, v in raw.items()}
                entry["id"] = entry_id
                entry["time"] = _iso(int(entry_id.split("-")[0]))
                if _matches(entry, user):
                    found.append(entry)
                    if len(found) == count:
                        break
            scanned += len(rows)
            last = rows[-1][0].decode()
            ms, seq = (int(x) for x in last.split("-"))
            high = f"{ms}-{seq - 1}" if seq else f"{ms - 1}-18446744073709551615"
            if ms == 0 and seq == 0:
                break
        return found


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"


class MemoryAudit:
    """The last entries in this process only (dev mode)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: deque[dict[str, str]] = deque(maxlen=max_entries)

    def record(self, entry: dict[str, str]) -> None:
        ms = int(time.time() * 1000)
        self._entries.append({**entry, "id": f"{ms}-0", "time": _iso(ms)})

    async def run(self) -> None:
        return None

    async def flush(self, seconds: float) -> None:
        return None

    async def read(
        self, user: str | None = None, since_ms: int | None = None, count: int = 100
    ) -> list[dict[str, str]]:
        found = [
            e
            for e in reversed(self._entries)
            if _matches(e, user) and (since_ms is None or int(e["id"].split("-")[0]) >= since_ms)
        ]
        return found[:count]
