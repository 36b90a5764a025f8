"""The fake upstream as a real WebRTC peer (aiortc), so a real browser can hold a call.

It answers the browser's offer, takes the ``oai-events`` data channel the browser opened,
consumes the microphone track, and carries events both ways: what the browser sends on
the channel goes to ``on_event`` (``session.update`` changes the call's session), and
the call's server events go to the browser; when the browser closes its peer connection
(or the connection fails), the call ends, as the upstream ends it. aiortc is optional
(the ``webrtc`` extra): without it, or for an offer that is not a browser's, the fake
answers with a canned SDP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

OnEvent = Callable[[dict[str, Any]], Awaitable[None]]


def can_answer(offer: str) -> bool:
    """Whether this offer is a real peer's (it has DTLS fingerprints) and aiortc is here."""
    if "a=fingerprint:" not in offer:
        return False
    try:
        import aiortc  # noqa: F401
    except ImportError:
        return False
    return True


class FakePeer:
    def __init__(
        self,
        on_event: OnEvent,
        on_open: Callable[[], Awaitable[None]],
        on_gone: Callable[[], Awaitable[None]],
    ) -> None:
        from aiortc import RTCPeerConnection
        from aiortc.contrib.media import MediaBlackhole

        self._pc = RTCPeerConnection()
        self._sink = MediaBlackhole()
        self._channel: Any = None
        self._on_event = on_event
        self._on_open = on_open
        self._tasks: set[asyncio.Task[None]] = set()

        @self._pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            self._channel = channel
            channel.on("message", self._message)
            self._spawn(self._on_open())

        @self._pc.on("connectionstatechange")
        def on_state() -> None:  # the browser closed its peer connection, or it failed
            if self._pc.connectionState in ("closed", "failed"):
                self._spawn(on_gone())

        @self._pc.on("track")
        def on_track(track: Any) -> None:
            self._sink.addTrack(track)
            self._spawn(self._sink.start())

    def _spawn(self, job: Awaitable[None]) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _message(self, data: Any) -> None:
        with contextlib.suppress(ValueError):
            event = json.loads(data)
            if isinstance(event, dict):
                self._spawn(self._on_event(event))

    async def answer(self, offer: str) -> str:
        from aiortc import RTCSessionDescription

        await self._pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        return str(self._pc.localDescription.sdp)  # candidates gathered: complete

    def send(self, event: dict[str, Any]) -> bool:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return False
        channel.send(json.dumps(event))
        return True

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._sink.stop()
        await self._pc.close()
