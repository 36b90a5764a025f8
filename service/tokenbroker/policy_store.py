"""Versioned policy documents in Redis (or in memory), and each replica's cached copy.

Every apply writes a new numbered version and moves the ``current`` pointer in one
atomic step. Replicas keep the parsed :class:`PolicySet` in memory and poll the pointer
(one small GET per interval) so the mint path never asks Redis for a policy. A document
that fails validation is never adopted: the replica keeps its last good version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
import yaml

from .policy import PolicyError, PolicySet, parse_policy_set

log = logging.getLogger("tokenbroker.policy")


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    version: int
    text: str
    applied_at: float
    note: str = ""


def parse_policy_text(text: str) -> PolicySet:
    """Parse YAML text and validate it; PolicyError on any problem."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError([f"(yaml): {exc}"]) from None
    return parse_policy_set(document)


class PolicyStore(Protocol):
    async def current_version(self) -> int: ...
    async def get(self, version: int) -> PolicyVersion | None: ...
    async def apply(self, text: str, note: str = "") -> int: ...
    async def history(self) -> list[PolicyVersion]: ...


_APPLY = """
local n = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[3] .. n, 'text', ARGV[1], 'applied_at', ARGV[2], 'note', ARGV[3])
redis.call('SET', KEYS[2], n)
return n
"""


class RedisPolicyStore:
    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        # One hash tag: every policy key lives in one Redis Cluster slot.
        base = f"{prefix}:{{policy}}"
        self._seq, self._current, self._doc = f"{base}:seq", f"{base}:current", f"{base}:v:"
        self._apply = client.register_script(_APPLY)

    async def current_version(self) -> int:
        value = await self._client.get(self._current)
        return int(value) if value else 0

    async def get(self, version: int) -> PolicyVersion | None:
        raw: dict[Any, Any] = await self._client.hgetall(f"{self._doc}{version}")
        fields = {bytes(k).decode(): bytes(v).decode() for k, v in raw.items()}
        if "text" not in fields:
            return None
        return PolicyVersion(
            version, fields["text"], float(fields.get("applied_at", 0)), fields.get("note", "")
        )

    async def apply(self, text: str, note: str = "") -> int:
        keys = [self._seq, self._current, self._doc]
        return int(await self._apply(keys=keys, args=[text, repr(time.time()), note]))

    async def history(self) -> list[PolicyVersion]:
        last = int(await self._client.get(self._seq) or 0)
        versions = [await self.get(n) for n in range(1, last + 1)]
        return [v for v in versions if v is not None]


class MemoryPolicyStore:
    """The same store in this process: dev mode and tests of the pure parts."""

    def __init__(self) -> None:
        self._versions: dict[int, PolicyVersion] = {}
        self._current = 0

    async def current_version(self) -> int:
        return self._current

    async def get(self, version: int) -> PolicyVersion | None:
        return self._versions.get(version)

    async def apply(self, text: str, note: str = "") -> int:
        version = max(self._versions, default=0) + 1
        self._versions[version] = PolicyVersion(version, text, time.time(), note)
        self._current = version
        return version

    async def history(self) -> list[PolicyVersion]:
        return [self._versions[n] for n in sorted(self._versions)]


class PolicyCache:
    """This replica's in-memory copy of the current policies."""

    def __init__(self, store: PolicyStore, interval: float) -> None:
        self._store = store
        self._interval = interval
        self.version = 0
        self.policies: PolicySet | None = None
        self._rejected: set[int] = set()

    async def bootstrap(self, initial_text: str | None) -> None:
        """Load the current version; on an empty store, apply ``initial_text`` first."""
        if await self._store.current_version() == 0 and initial_text is not None:
            parse_policy_text(initial_text)  # refuse to seed an invalid file
            version = await self._store.apply(initial_text, note="initial file")
            log.info("policy store was empty; applied the configured file as version %d", version)
        await self.refresh()

    async def refresh(self) -> bool:
        """Adopt the current version if it is new and valid. True if something changed."""
        version = await self._store.current_version()
        if version == self.version or version in self._rejected:
            return False
        record = await self._store.get(version)
        if record is None:
            return False
        try:
            policies = parse_policy_text(record.text)
        except PolicyError as exc:
            self._rejected.add(version)
            log.error(
                "policy version %d is invalid; keeping version %d: %s",
                version,
                self.version,
                "; ".join(exc.errors),
            )
            return False
        self.policies, self.version = policies, version
        log.info("policy version %d adopted", version)
        return True

    async def run(self) -> None:
        """Poll for new versions forever; store errors only delay the next adoption."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except (aioredis.RedisError, OSError) as exc:
                log.warning("policy refresh failed: %s", type(exc).__name__)

    def describe(self) -> dict[str, Any]:
        return {"version": self.version, "loaded": self.policies is not None}
