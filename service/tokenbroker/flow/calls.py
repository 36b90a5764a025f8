"""What every API family's calls share: the browser's SDP offer checked before anything
is charged, and an ended call's (or session's) summary for its owner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokenbroker.errors import InvalidRequest, NotFound
from tokenbroker.flow.context import RequestContext
from tokenbroker.flow.mint import Broker
from tokenbroker.flow.watched import LiveCalls
from tokenbroker.upstream.sideband import CALL_ID

MAX_SDP_LINE = 4096


@dataclass(frozen=True, slots=True)
class CallReply:
    call_id: str
    answer: str
    headers: dict[str, str]


def check_offer(sdp: Any) -> str:
    """An SDP offer that looks like one, else a 400 naming ``sdp``."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise InvalidRequest("invalid_offer", "The SDP offer is missing.", param="sdp")
    lines = sdp.replace("\r\n", "\n").split("\n")
    if lines[0].strip() != "v=0" or not any(line.startswith("m=") for line in lines):
        raise InvalidRequest(
            "invalid_offer", "The SDP offer must start with v=0 and have media (m=) lines.",
            param="sdp",
        )  # fmt: skip
    if any(len(line) > MAX_SDP_LINE or "\x00" in line for line in lines):
        raise InvalidRequest("invalid_offer", "The SDP offer has an invalid line.", param="sdp")
    return sdp


async def ended_call(
    broker: Broker, live: LiveCalls, authorization: Sequence[str], call_id: str,
    log: RequestContext,
) -> dict[str, Any]:  # fmt: skip
    """An ended call's reason and usage for its owner (404 for anyone else, or after the
    registry let it go)."""
    user_id, _ = await broker.identify(authorization, log)
    ended = await live.registry.ended(call_id) if CALL_ID.match(call_id) else None
    if ended is None or ended.get("u") != user_id:
        raise NotFound("call_not_found", "No such live call.", param="call_id")
    return {"status": "ended", "reason": ended["reason"], "started_at": ended["started_at"],
            "ended_at": ended["ended_at"], "usage": ended["usage"]}  # fmt: skip
