"""Word between replicas that a user's budget is spent, so that every replica watching one
of the user's calls cancels its responses at once (Redis pub/sub), instead of waiting for
the hang-up to reach the upstream and close the sideband.

A notice names the user by a tag (a short hash of the id, never the id itself). It is a
speed-up, not the guarantee: the calls are hung up through the registry whatever happens
to a notice, so a lost one costs only the time the hang-up takes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("tokenbroker.calls")


def user_tag(user_id: str) -> str:
    return hashlib.blake2b(user_id.encode(), digest_size=9).hexdigest()


class SpentNotices(Protocol):
    async def announce(self, user_id: str) -> None: ...
    async def listen(self, on_spent: Callable[[str], None]) -> None: ...


class LocalNotices:
    """One process (dev mode): the replica that saw the crossing is the only one."""

    async def announce(self, user_id: str) -> None:
        return None

    async def listen(self, on_spent: Callable[[str], None]) -> None:
        await asyncio.Event().wait()  # nothing ever arrives


class RedisNotices:
    def __init__(self, client: Any, listener: Any, prefix: str) -> None:
        """``client`` publishes; ``listener`` is the blocking pub/sub connection."""
        self._client = client
        self._listener = listener
        self.channel = f"{prefix}:{{calls}}:spent"

    async def announce(self, user_id: str) -> None:
        await self._client.publish(self.channel, user_tag(user_id))

    async def listen(self, on_spent: Callable[[str], None]) -> None:
        """Call ``on_spent(tag)`` for every notice, for ever; a lost subscription is made
        again (notices sent meanwhile are missed: the hang-ups still end the calls)."""
        pause = 0.1
        while True:
            try:
                async with self._listener.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    pause = 0.1
                    while True:
                        message = await pubsub.get_message(timeout=None)
                        if message is not None:
                            data = message["data"]
                            on_spent(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: subscribe again when it is back
                log.warning("budget notices unavailable (%s)", type(exc).__name__)
                await asyncio.sleep(pause)  # backoff between attempts, not a sync wait
                pause = min(pause * 2, 2.0)
