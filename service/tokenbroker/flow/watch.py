"""What a watched call is to this replica's calls (flow/watched.py), whatever its API
family: each family's watcher (tokenbroker.families), most over flow/watcher.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from tokenbroker.flow.watcher import Tally
from tokenbroker.registry.registry import CallRecord

if TYPE_CHECKING:
    from tokenbroker.flow.watched import LiveCalls


class Watch(Protocol):
    """One watched call or session, whatever its API family (each family in
    tokenbroker.families has its own)."""

    record: CallRecord
    tally: Tally
    user_tag: str
    cutting: bool

    async def run(self) -> None: ...
    async def cut(self) -> None: ...


WatchFactory = Callable[[CallRecord, "LiveCalls"], Watch]
Ender = Callable[[str], Awaitable[bool]]  # ends a call upstream by id; False if not taken
