"""Each replica's cached copy of the current policies and user assignments.

Replicas keep the parsed :class:`PolicySet` in memory and poll the store's version stamp
(one small GET per interval) so the mint path never asks Redis for a policy. A document
that fails validation is never adopted: the replica keeps its last good version.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from tokenbroker.infra.redis import STORE_ERRORS
from tokenbroker.policy.model import Policy, PolicyError, PolicySet
from tokenbroker.policy.parse import parse_policy_text
from tokenbroker.policy.store import PolicyStore, digest
from tokenbroker.policy.vocabulary import Vocabulary

log = logging.getLogger("tokenbroker.policy")


class PolicyCache:
    """This replica's in-memory copy of the current policies and user assignments.

    Changes arrive by notification (pub/sub) and by a periodic check of the version
    stamp, so a lost message only delays a switch by one interval.
    """

    def __init__(self, store: PolicyStore, interval: float, vocabulary: Vocabulary) -> None:
        self.store = store
        self.vocabulary = vocabulary
        self._interval = interval
        self.version = 0
        self.digest = ""  # of the document held: with the version, what identifies it
        self.policies: PolicySet | None = None
        self.assignments: dict[str, str] = {}
        self._users_seen: str | None = None
        self._rejected: set[tuple[int, str]] = set()

    def select(self, user_id: str, claims: Mapping[str, Any]) -> Policy:
        assert self.policies is not None
        return self.policies.select(user_id, claims, self.assignments)

    async def bootstrap(self, initial_text: str | None) -> None:
        """Load the current version; on an empty store, apply ``initial_text`` first."""
        version = (await self.store.stamp()).version
        if version == 0 and initial_text is not None:
            await asyncio.to_thread(
                parse_policy_text, initial_text, self.vocabulary
            )  # refuse to seed an invalid file
            version = await self.store.apply(initial_text, note="initial file")
            log.info("policy store was empty; applied the configured file as version %d", version)
        await self.refresh()

    async def refresh(self) -> bool:
        """Adopt what changed, if valid. True if something changed."""
        stamp = await self.store.stamp()
        changed = False
        if stamp.users != self._users_seen:
            self.assignments = await self.store.assignments()
            self._users_seen = stamp.users
            changed = True
        held = stamp.version == self.version and stamp.digest in ("", self.digest)
        if held or stamp.policy in self._rejected:  # "" : a pointer written without digest
            return changed
        version = stamp.version
        record = await self.store.get(version)
        if record is None or stamp.digest not in ("", digest(record.text)):
            return changed  # written after the stamp was read: the next poll takes it
        try:
            policies = await asyncio.to_thread(parse_policy_text, record.text, self.vocabulary)
        except PolicyError as exc:
            self._rejected.add(stamp.policy)
            log.error(
                "policy version %d is invalid; keeping version %d: %s",
                version, self.version, "; ".join(exc.errors),
            )  # fmt: skip
            return changed
        self.policies, self.version, self.digest = policies, version, digest(record.text)
        log.info("policy version %d (%s) adopted", version, self.digest)
        return True

    async def _refresh_quietly(self) -> None:
        # This task must outlive any error: a dead refresher would freeze the policies.
        try:
            await self.refresh()
        except STORE_ERRORS as exc:
            log.warning("policy refresh failed: %s", type(exc).__name__)
        except Exception:
            log.exception("policy refresh failed unexpectedly")

    async def poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self._refresh_quietly()

    async def listen(self) -> None:
        while True:
            try:
                await self.store.wait_for_change()
            except Exception as exc:  # never let the listener die; poll covers
                log.warning("policy notifications lost (%s); polling", type(exc).__name__)
                await asyncio.sleep(self._interval)
                continue
            await self._refresh_quietly()

    async def run(self, initial_text: str | None) -> None:
        """Bootstrap (retrying while the store is down), then follow changes forever."""
        while self.policies is None:
            try:
                await self.bootstrap(initial_text)
            except STORE_ERRORS as exc:
                log.warning("policy bootstrap failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(self._interval)
        await asyncio.gather(self.poll(), self.listen())
