"""What the fake's two sidebands (a Realtime call's, a GPT-Live session's) share: the
handshake refused or accepted, and each accepted socket counted on its call."""

from __future__ import annotations

from typing import Protocol

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
