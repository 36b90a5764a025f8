"""The live-call registry in this process only (``tokenbroker dev``: one replica, no Redis).

Same operations and answers as :class:`~tokenbroker.registry.registry.Registry`; with one
replica there is no one to adopt from, so leases only record what the owner renewed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from tokenbroker.registry.registry import ENDED_KEEP_MS, LEASE_HOLD_MS, CallRecord


class MemoryRegistry:
    def __init__(self) -> None:
        self._calls: dict[str, CallRecord] = {}
        self._leases: dict[str, float] = {}
        self._users: dict[str, dict[str, float]] = {}  # user -> call id or reservation -> end
        self._ended: dict[str, tuple[float, dict[str, Any]]] = {}  # call id -> until, summary

    def _user(self, user_id: str) -> dict[str, float]:
        held = self._users.setdefault(user_id, {})
        now = time.time()
        for key in [k for k, end in held.items() if end <= now]:
            del held[key]
        return held

    async def reserve(
        self, user_id: str, max_live: int | None, token: str, hold: float | None = None
    ) -> float | None:
        held = self._user(user_id)
        if max_live and len(held) >= max_live:
            return max(min(held.values()) - time.time(), 0.0)
        held[token] = time.time() + (hold if hold is not None else LEASE_HOLD_MS / 1000)
        return None

    async def release(self, user_id: str, token: str) -> None:
        self._user(user_id).pop(token, None)

    async def register(
        self, token: str, call_id: str, user_id: str, policy: str, session: dict[str, Any],
        max_duration: float, owner: str, lease: float, api: str = "realtime",
    ) -> CallRecord:  # fmt: skip
        now = time.time()
        record = CallRecord(call_id, user_id, policy, session, now, now + max_duration, owner,
                            api=api)  # fmt: skip
        held = self._user(user_id)
        held.pop(token, None)
        held[call_id] = record.deadline + 60
        self._calls[call_id] = record
        self._leases[call_id] = now + lease
        return record

    async def renew(self, owner: str, call_ids: list[str], lease: float) -> list[str]:
        lost = []
        for call_id in call_ids:
            record = self._calls.get(call_id)
            if record is None or record.owner != owner:
                lost.append(call_id)
            else:
                self._leases[call_id] = time.time() + lease
        return lost

    async def claim(self, owner: str, lease: float, limit: int = 100) -> list[CallRecord]:
        now = time.time()
        claimed: list[CallRecord] = []
        for call_id, until in list(self._leases.items()):
            if until <= now and len(claimed) < limit and call_id in self._calls:
                self._calls[call_id] = replace(self._calls[call_id], owner=owner)
                self._leases[call_id] = now + lease
                claimed.append(self._calls[call_id])
        return claimed

    async def handover(self, owner: str, call_ids: list[str]) -> int:
        handed = 0
        for call_id in call_ids:
            record = self._calls.get(call_id)
            if record is not None and record.owner == owner:
                self._calls[call_id] = replace(record, owner="")
                self._leases[call_id] = 0.0
                handed += 1
        return handed

    async def mark(self, call_id: str, reason: str) -> bool:
        record = self._calls.get(call_id)
        if record is None:
            return False
        self._calls[call_id] = replace(record, end_reason=reason)
        return True

    async def finish(self, record: CallRecord, summary: dict[str, Any] | None = None) -> bool:
        self._leases.pop(record.call_id, None)
        self._user(record.user_id).pop(record.call_id, None)
        if self._calls.pop(record.call_id, None) is None:
            return False
        now = time.time()
        self._ended = {k: v for k, v in self._ended.items() if v[0] > now}
        self._ended[record.call_id] = (now + ENDED_KEEP_MS / 1000,
                                       {**(summary or {}), "u": record.user_id})  # fmt: skip
        return True

    async def ended(self, call_id: str) -> dict[str, Any] | None:
        kept = self._ended.get(call_id)
        return kept[1] if kept is not None and kept[0] > time.time() else None

    async def get(self, call_id: str) -> CallRecord | None:
        return self._calls.get(call_id)

    async def user_calls(self, user_id: str) -> list[str]:
        return [k for k in self._user(user_id) if not k.startswith("reserve:")]

    async def all(self, limit: int = 1000) -> list[tuple[CallRecord, float]]:
        ordered = sorted(self._leases.items(), key=lambda item: item[1])[:limit]
        return [(self._calls[c], until) for c, until in ordered if c in self._calls]
