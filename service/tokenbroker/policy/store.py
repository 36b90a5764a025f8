"""Versioned policy documents in Redis (or in memory).

Every apply writes a new numbered version and moves the ``current`` pointer in one
atomic step. Replicas keep the parsed :class:`PolicySet` in memory and poll the pointer
(one small GET per interval) so the mint path never asks Redis for a policy. A document
that fails validation is never adopted: the replica keeps its last good version.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis

log = logging.getLogger("tokenbroker.policy")


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    version: int
    text: str
    applied_at: float
    note: str = ""


def digest(text: str) -> str:
    """What identifies a document's content: a replica never mistakes a new document for
    the one it holds, even when a store that lost its data numbers it 1 again."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Stamp:
    """What a replica polls: the current version and its digest, and the assignments'
    revision (a random token per change, so a store that lost its data cannot repeat one)."""

    version: int
    digest: str
    users: str

    @property
    def policy(self) -> tuple[int, str]:
        return self.version, self.digest


class PolicyStore(Protocol):
    async def stamp(self) -> Stamp: ...

    async def get(self, version: int) -> PolicyVersion | None: ...
    async def apply(self, text: str, note: str = "") -> int: ...
    async def history(self) -> list[PolicyVersion]: ...
    async def assignments(self) -> dict[str, str]: ...
    async def assign(self, user_id: str, policy: str | None) -> None: ...
    async def wait_for_change(self) -> None:
        """Return when another writer announces a change (may also return spuriously)."""
        ...


class RedisPolicyStore:
    def __init__(
        self, client: aioredis.Redis, prefix: str, listener: aioredis.Redis | None = None
    ) -> None:
        self._client = client
        # Pub/sub blocks on a read, so it gets a client without the short socket timeout.
        self._listener = listener or client
        # One hash tag: every policy key lives in one Redis Cluster slot.
        base = f"{prefix}:{{policy}}"
        self._seq, self._current, self._doc = f"{base}:seq", f"{base}:current", f"{base}:v:"
        self._users, self._users_rev = f"{base}:users", f"{base}:users_rev"
        self.channel = f"{base}:changed"

    async def stamp(self) -> Stamp:
        current, revision = await self._client.mget(self._current, self._users_rev)
        text = current.decode() if isinstance(current, bytes) else str(current or "0")
        version, _, text_digest = text.partition(":")  # "N:digest" (a bare N before digests)
        users = revision.decode() if isinstance(revision, bytes) else str(revision or "")
        return Stamp(int(version), text_digest, users)

    async def get(self, version: int) -> PolicyVersion | None:
        raw: dict[Any, Any] = await self._client.hgetall(f"{self._doc}{version}")
        return _record(version, raw)

    async def apply(self, text: str, note: str = "") -> int:
        version = int(await self._client.incr(self._seq))
        # The pointer moves in the same transaction that writes the document.
        async with self._client.pipeline(transaction=True) as tx:
            tx.hset(
                f"{self._doc}{version}",
                mapping={"text": text, "applied_at": repr(time.time()), "note": note},
            )
            tx.set(self._current, f"{version}:{digest(text)}")
            await tx.execute()
        await self._client.publish(self.channel, f"policy {version}")
        return version

    async def history(self) -> list[PolicyVersion]:
        last = int(await self._client.get(self._seq) or 0)
        async with self._client.pipeline(transaction=False) as pipe:
            for n in range(1, last + 1):
                pipe.hgetall(f"{self._doc}{n}")
            rows = await pipe.execute()
        versions = [_record(n, raw) for n, raw in enumerate(rows, start=1)]
        return [v for v in versions if v is not None]

    async def assignments(self) -> dict[str, str]:
        raw: dict[Any, Any] = await self._client.hgetall(self._users)
        return {bytes(k).decode(): bytes(v).decode() for k, v in raw.items()}

    async def assign(self, user_id: str, policy: str | None) -> None:
        async with self._client.pipeline(transaction=True) as tx:
            if policy is None:
                tx.hdel(self._users, user_id)
            else:
                tx.hset(self._users, user_id, policy)
            tx.set(self._users_rev, os.urandom(8).hex())
            await tx.execute()
        await self._client.publish(self.channel, "users")

    async def wait_for_change(self) -> None:
        async with self._listener.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(self.channel)
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None:
                    return


def _record(version: int, raw: dict[Any, Any]) -> PolicyVersion | None:
    fields = {bytes(k).decode(): bytes(v).decode() for k, v in raw.items()}
    if "text" not in fields:
        return None
    try:
        applied_at = float(fields.get("applied_at", 0))
    except ValueError:
        applied_at = 0.0
    return PolicyVersion(version, fields["text"], applied_at, fields.get("note", ""))


class MemoryPolicyStore:
    """The same store in this process: dev mode."""

    def __init__(self) -> None:
        self._versions: dict[int, PolicyVersion] = {}
        self._current = 0
        self._users: dict[str, str] = {}
        self._users_rev = 0
        self._changed = asyncio.Event()

    def _announce(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def stamp(self) -> Stamp:
        record = self._versions.get(self._current)
        return Stamp(self._current, digest(record.text) if record else "", str(self._users_rev))

    async def get(self, version: int) -> PolicyVersion | None:
        return self._versions.get(version)

    async def apply(self, text: str, note: str = "") -> int:
        version = max(self._versions, default=0) + 1
        self._versions[version] = PolicyVersion(version, text, time.time(), note)
        self._current = version
        self._announce()
        return version

    async def history(self) -> list[PolicyVersion]:
        return [self._versions[n] for n in sorted(self._versions)]

    async def assignments(self) -> dict[str, str]:
        return dict(self._users)

    async def assign(self, user_id: str, policy: str | None) -> None:
        if policy is None:
            self._users.pop(user_id, None)
        else:
            self._users[user_id] = policy
        self._users_rev += 1
        self._announce()

    async def wait_for_change(self) -> None:
        await self._changed.wait()
