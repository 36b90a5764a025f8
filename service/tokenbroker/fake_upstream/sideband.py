"""What the fake's two sidebands (a Realtime call's, a GPT-Live session's) share: the
handshake refused or accepted, each accepted socket counted on its call, and a server
event sent to all of them."""

from __future__ import annotations

import contextlib
import json
from typing import Any, Protocol

from starlette.websockets import WebSocket


class Watched(Protocol):
    live: bool
    connects: int
    sockets: set[WebSocket]
    most_sidebands: int  # the most sidebands open at once (never two, if watched once)


async def admit(socket: WebSocket, target: Watched | None, refused: bool) -> bool:
    """Accept the sideband of a live call with a good key (counted on it); otherwise
    close before accepting, so the handshake is refused (403)."""
    if refused or target is None or not target.live:
        await socket.close(1008)
        return False
    await socket.accept()
    target.connects += 1
    target.sockets.add(socket)
    target.most_sidebands = max(target.most_sidebands, len(target.sockets))
    return True


async def fan_out(target: Watched, event: dict[str, Any]) -> int:
    """``event`` to every sideband open on the call; how many took it."""
    sent = 0
    for socket in list(target.sockets):
        with contextlib.suppress(Exception):
            await socket.send_text(json.dumps(event))
            sent += 1
    return sent
