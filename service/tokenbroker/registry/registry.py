"""The live-call registry in Redis: call id → user, policy, session, start, end, owner, lease.

The replica that watches a call (its *owner*) renews the call's lease; a call whose lease
ran out is claimed by whichever replica scans first, in one script call, so no call is
left unwatched and none is watched twice. Each user's live calls (and reservations for
calls being created) sit in a set that caps ``max_live_calls``. Every operation is one
``registry.lua`` call on the Redis server's clock, so replicas need not agree on time.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

from tokenbroker.registry.notices import user_tag

LEASE_HOLD_MS = 30_000  # a reservation for a call being created lasts at most this
ENDED_KEEP_MS = 20 * 60_000  # how long an ended call's reason and usage stay readable


@dataclass(frozen=True, slots=True)
class CallRecord:
    call_id: str
    user_id: str
    policy: str
    session: dict[str, Any]  # the enforced session sent upstream (what a revert restores)
    started: float  # Unix seconds
    deadline: float  # Unix seconds: the policy's max_duration from the start
    owner: str = ""
    end_reason: str = ""  # set by whoever asked the call to end (client, budget, operator)
    api: str = "realtime"  # the API family: realtime (a Realtime call) or live (GPT-Live)

    @classmethod
    def from_fields(cls, call_id: str, raw: dict[bytes, bytes] | dict[str, str]) -> CallRecord:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return cls(
            call_id=call_id,
            user_id=fields.get("u", ""),
            policy=fields.get("p", ""),
            session=json.loads(fields.get("j") or "{}"),
            started=int(fields.get("s", 0)) / 1000,
            deadline=int(fields.get("d", 0)) / 1000,
            owner=fields.get("o", ""),
            end_reason=fields.get("r", ""),
            api=fields.get("a", "realtime"),
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: list[Any]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class CallRegistry(Protocol):
    async def reserve(
        self, user_id: str, max_live: int | None, token: str, hold: float | None = None
    ) -> float | None: ...
    async def release(self, user_id: str, token: str) -> None: ...
    async def register(
        self, token: str, call_id: str, user_id: str, policy: str, session: dict[str, Any],
        max_duration: float, owner: str, lease: float, api: str = "realtime",
    ) -> CallRecord: ...  # fmt: skip
    async def renew(self, owner: str, call_ids: list[str], lease: float) -> list[str]: ...
    async def claim(self, owner: str, lease: float, limit: int = 100) -> list[CallRecord]: ...
    async def handover(self, owner: str, call_ids: list[str]) -> int: ...
    async def mark(self, call_id: str, reason: str) -> bool: ...
    async def finish(self, record: CallRecord, summary: dict[str, Any] | None = None) -> bool: ...
    async def ended(self, call_id: str) -> dict[str, Any] | None: ...
    async def get(self, call_id: str) -> CallRecord | None: ...
    async def user_calls(self, user_id: str) -> list[str]: ...
    async def all(self, limit: int = 1000) -> list[tuple[CallRecord, float]]: ...


class Registry:
    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._index = f"{prefix}:{{calls}}:all"
        self._call_prefix = f"{prefix}:{{calls}}:c:"
        self._user_prefix = f"{prefix}:{{calls}}:u:"
        self._ended_prefix = f"{prefix}:{{calls}}:e:"
        self._script = client.register_script(
            resources.files(__package__).joinpath("registry.lua").read_text()
        )

    def _call(self, call_id: str) -> str:
        return self._call_prefix + call_id

    def _user(self, user_id: str) -> str:
        return self._user_prefix + user_tag(user_id)

    async def reserve(
        self, user_id: str, max_live: int | None, token: str, hold: float | None = None
    ) -> float | None:
        """Hold a place among the user's live calls (for a call being created: until it is
        registered; for a GPT-Live session: ``hold`` seconds, its whole life); None if
        held, else the seconds until one of the user's live calls must have ended."""
        hold_ms = round(hold * 1000) if hold is not None else LEASE_HOLD_MS
        reply = await self._script(
            keys=[self._user(user_id)], args=["reserve", max_live or 0, token, hold_ms]
        )
        return None if int(reply[0]) == 1 else max(int(reply[1]), 0) / 1000

    async def release(self, user_id: str, token: str) -> None:
        await self._script(keys=[self._user(user_id)], args=["release", token])

    async def register(
        self,
        token: str,
        call_id: str,
        user_id: str,
        policy: str,
        session: dict[str, Any],
        max_duration: float,
        owner: str,
        lease: float,
        api: str = "realtime",
    ) -> CallRecord:
        """The created call, owned by ``owner``, in place of the user's reservation."""
        started, deadline = await self._script(
            keys=[self._index, self._call(call_id), self._user(user_id)],
            args=["register", token, call_id, round(max_duration * 1000), round(lease * 1000),
                  owner, user_id, policy, json.dumps(session, separators=(",", ":")), api],
        )  # fmt: skip
        return CallRecord(call_id, user_id, policy, session, int(started) / 1000,
                          int(deadline) / 1000, owner, api=api)  # fmt: skip

    async def renew(self, owner: str, call_ids: list[str], lease: float) -> list[str]:
        """Extend the leases of the owner's calls; the ids it no longer owns."""
        if not call_ids:
            return []
        lost = await self._script(
            keys=[self._index, *(self._call(c) for c in call_ids)],
            args=["renew", owner, round(lease * 1000), *call_ids],
        )
        return [c.decode() for c in lost]

    async def claim(self, owner: str, lease: float, limit: int = 100) -> list[CallRecord]:
        """Calls nobody renewed in time, now ``owner``'s."""
        flat = await self._script(
            keys=[self._index], args=["claim", owner, round(lease * 1000), limit, self._call_prefix]
        )
        return [
            CallRecord.from_fields(call_id.decode(), _pairs(fields))
            for call_id, fields in zip(flat[::2], flat[1::2], strict=True)
        ]

    async def handover(self, owner: str, call_ids: list[str]) -> int:
        """Give up the owner's calls at once (their leases end now) without ending them."""
        if not call_ids:
            return 0
        return int(
            await self._script(
                keys=[self._index, *(self._call(c) for c in call_ids)],
                args=["handover", owner, *call_ids],
            )
        )

    async def mark(self, call_id: str, reason: str) -> bool:
        """Record why a live call is about to end; False if it is not live."""
        return bool(await self._script(keys=[self._call(call_id)], args=["mark", reason]))

    async def finish(self, record: CallRecord, summary: dict[str, Any] | None = None) -> bool:
        """Remove an ended call, keeping ``summary`` (its owner, reason, usage) readable for
        :data:`ENDED_KEEP_MS`; False if another finish came first."""
        text = json.dumps({**(summary or {}), "u": record.user_id}, separators=(",", ":"))
        return bool(
            await self._script(
                keys=[self._index, self._call(record.call_id), self._user(record.user_id),
                      self._ended(record.call_id)],
                args=["finish", record.call_id, text, ENDED_KEEP_MS],
            )
        )  # fmt: skip

    def _ended(self, call_id: str) -> str:
        return self._ended_prefix + call_id

    async def ended(self, call_id: str) -> dict[str, Any] | None:
        """What an ended call left (its summary), for a while after its end."""
        raw = await self._client.get(self._ended(call_id))
        return json.loads(raw) if raw else None

    async def get(self, call_id: str) -> CallRecord | None:
        raw = await self._client.hgetall(self._call(call_id))
        return CallRecord.from_fields(call_id, raw) if raw else None

    async def user_calls(self, user_id: str) -> list[str]:
        """The ids of the user's live calls (reservations left out)."""
        now_ms = int(time.time() * 1000)
        members = await self._client.zrangebyscore(self._user(user_id), now_ms, "+inf")
        return [m.decode() for m in members if not m.startswith(b"reserve:")]

    async def all(self, limit: int = 1000) -> list[tuple[CallRecord, float]]:
        """Live calls with their lease ends (Unix seconds), oldest lease first."""
        rows = await self._client.zrange(self._index, 0, limit - 1, withscores=True)
        async with self._client.pipeline(transaction=False) as pipe:
            for call_id, _ in rows:
                pipe.hgetall(self._call(call_id.decode()))
            fields = await pipe.execute()
        return [
            (CallRecord.from_fields(call_id.decode(), raw), score / 1000)
            for (call_id, score), raw in zip(rows, fields, strict=True)
            if raw
        ]
