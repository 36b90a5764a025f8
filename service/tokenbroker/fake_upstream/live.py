"""The fake upstream's GPT-Live sessions: ``POST /v1/live/sessions`` (and Azure's
``/openai/v1/live/sessions``, which takes the key as ``api-key`` or as a bearer token: the
docs show only the bearer), the body checked against the schema derived from the SDK's
types. A real browser's offer gets a real WebRTC peer (aiortc): on its data channel the
session starts (``session.started``), and the permissions it was created with hold as the
real service enforces them: a client event outside ``allowed_client_events`` is refused
with an ``error`` (``event_not_allowed``), and only ``allowed_server_events`` reach the
browser. Its sideband (``…/live/sessions/{id}/attach``) sees every server event; a
``session.close`` there ends the session (``session.closed`` with the final usage).
``GET /_fake/live`` and ``/_fake/live/{id}``: what the sessions were sent; control hooks
below play the model's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tokenbroker.fake_upstream import events
from tokenbroker.fake_upstream.peer import FakePeer, can_answer
from tokenbroker.fake_upstream.sideband import admit, fan_out


@dataclass
class FakeLiveSession:
    session_id: str
    session: dict[str, Any]
    from_browser: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # client event types refused
    to_browser: list[str] = field(default_factory=list)  # server event types delivered
    live: bool = True
    peer: FakePeer | None = None
    sockets: set[WebSocket] = field(default_factory=set)  # the attached sidebands
    connects: int = 0
    most_sidebands: int = 0
    from_sideband: list[dict[str, Any]] = field(default_factory=list)
    seconds: int = 0  # the cumulative usage last reported
    closed_reason: str | None = None
    drifted_at: float | None = None  # when the load hook drifted it (time.perf_counter())
    reverted_after: float | None = None  # seconds from that drift to the sideband's revert
    spent_at: float | None = None  # when the load hook reported usage past its budget
    closed_after: float | None = None  # seconds from that to a sideband's session.close

    def state(self) -> dict[str, Any]:
        return {"id": self.session_id, "session": self.session, "live": self.live,
                "from_browser": self.from_browser, "refused": self.refused,
                "to_browser": self.to_browser, "webrtc": self.peer is not None,
                "sidebands": len(self.sockets), "connects": self.connects,
                "most_sidebands": self.most_sidebands, "from_sideband": self.from_sideband,
                "closed_reason": self.closed_reason}  # fmt: skip

    def _channel(self) -> dict[str, Any]:
        return ((self.session.get("client") or {}).get("data_channel")) or {}

    def client_may(self, kind: Any) -> bool:
        allowed = self._channel().get("allowed_client_events", "all")  # omitted: all
        return allowed == "all" or kind in allowed

    def server_may(self, kind: str) -> bool:
        allowed = self._channel().get("allowed_server_events", "all")
        return allowed == "all" or any(s.get("type") == kind for s in allowed)


class FakeLive:
    def __init__(self, api_key: str | None, unauthorized: Any, key_of: Any) -> None:
        self.sessions: dict[str, FakeLiveSession] = {}
        self._api_key, self._unauthorized, self._key_of = api_key, unauthorized, key_of

    def routes(self) -> list[BaseRoute]:
        return [
            WebSocketRoute("/v1/live/sessions/{session_id}/attach", self.sideband),
            WebSocketRoute("/openai/v1/live/sessions/{session_id}/attach", self.sideband),
            Route("/_fake/live", self.show_all, methods=["GET"]),
            Route("/_fake/live_load", self.load, methods=["POST"]),
            Route("/_fake/live/{session_id}", self.show, methods=["GET"]),
            Route("/_fake/live/{session_id}/{action}", self.control, methods=["POST"]),
        ]

    async def sideband(self, socket: WebSocket) -> None:
        """``…/live/sessions/{id}/attach``: no ``session.start``; sees the session's server
        events; ``session.close`` ends it, ``session.update`` changes its delegation or
        triggers."""
        live = self.sessions.get(socket.path_params["session_id"])
        refused = self._unauthorized(self._key_of(socket.headers), self._api_key) is not None
        if not await admit(socket, live, refused) or live is None:
            return
        try:
            while True:
                event = json.loads(await socket.receive_text())
                live.from_sideband.append(event)
                if event.get("type") == "session.close":
                    if live.spent_at is not None and live.closed_after is None:
                        live.closed_after = time.perf_counter() - live.spent_at
                    await self._end(live, "close_requested")
                elif event.get("type") == "session.update":
                    if live.drifted_at is not None and live.reverted_after is None:
                        live.reverted_after = time.perf_counter() - live.drifted_at
                    for key in ("delegation", "triggers"):
                        if key in (event.get("session") or {}):
                            live.session[key] = event["session"][key]
                    await self._broadcast(live, {"event_id": events.event_id(),
                                                 "type": "session.updated",
                                                 "session": live.session})  # fmt: skip
        except (WebSocketDisconnect, RuntimeError, ValueError):
            pass
        finally:
            live.sockets.discard(socket)

    async def _broadcast(self, live: FakeLiveSession, event: dict[str, Any]) -> int:
        """A server event to the sidebands (all of it) and the browser (if allowed)."""
        self._send(live, event)
        return await fan_out(live, event)

    async def control(self, request: Request) -> Response:
        """``usage`` ``{"seconds", "active_seconds"?, "paused_seconds"?}``: the session's
        cumulative usage so far (``session.usage.updated``); ``emit``: any server event;
        ``browser``: a client event as if sent on the data channel (permissions hold);
        ``expire``: the upstream ends the session (``session.closed``, reason expired)."""
        live = self.sessions.get(request.path_params["session_id"])
        if live is None:
            return JSONResponse({"error": "no such session"}, 404)
        action = request.path_params["action"]
        if action == "usage":
            usage = await request.json()
            live.seconds = int(usage["seconds"])
            sent = await self._broadcast(live, {"event_id": events.event_id(),
                                                "type": "session.usage.updated",
                                                "usage": usage})  # fmt: skip
            return JSONResponse({"delivered": sent})
        if action == "emit":
            return JSONResponse({"delivered": await self._broadcast(live, await request.json())})
        if action == "browser":
            await self._from_browser(live, await request.json())
        elif action == "expire":
            await self._end(live, "expired")
        else:
            return JSONResponse({"error": "unknown action"}, 404)
        return JSONResponse(live.state())

    async def create(self, body: dict[str, Any]) -> Response:
        sdp = body["transport"]["sdp"]
        if not sdp.startswith("v=0"):
            return JSONResponse({"error": {"type": "invalid_request_error", "code":
                                 "invalid_offer", "message": "The SDP offer is not valid.",
                                 "param": "transport.sdp"}}, 400)  # fmt: skip
        live = FakeLiveSession(f"live_{secrets.token_hex(12)}", body["session"])
        answer = events.answer_for(live.session_id)
        if can_answer(sdp):
            live.peer = FakePeer(lambda event: self._from_browser(live, event),
                                 lambda: self._started(live),
                                 lambda: self._end(live, "remote_hangup"))  # fmt: skip
            answer = await live.peer.answer(sdp)
        self.sessions[live.session_id] = live
        return JSONResponse({"session": {"id": live.session_id},
                             "transport": {"type": "webrtc", "sdp": answer}}, 201)  # fmt: skip

    def _send(self, live: FakeLiveSession, event: dict[str, Any]) -> None:
        if live.peer is not None and live.server_may(event["type"]) and live.peer.send(event):
            live.to_browser.append(event["type"])

    async def _started(self, live: FakeLiveSession) -> None:
        resource = {**live.session, "id": live.session_id, "status": "active"}
        self._send(live, {"event_id": events.event_id(), "type": "session.started",
                          "session": resource})  # fmt: skip

    async def _from_browser(self, live: FakeLiveSession, event: dict[str, Any]) -> None:
        live.from_browser.append(event)
        kind = event.get("type")
        if not live.client_may(kind):
            live.refused.append(str(kind))
            error = events.error_event("event_not_allowed", f"The client event {kind!r} is not "
                                       "allowed on this data channel.", "type",
                                       event.get("event_id"))  # fmt: skip
            self._send(live, error)
        elif kind == "session.input_audio.mute":
            self._send(live, {"event_id": events.event_id(), "type": "session.input_audio.muted"})
        elif kind == "session.close":
            await self._end(live, "close_requested")

    async def _end(self, live: FakeLiveSession, reason: str = "close_requested") -> None:
        if not live.live:
            return
        live.live, live.closed_reason = False, reason
        await self._broadcast(live, {"event_id": events.event_id(), "type": "session.closed",
                                     "reason": reason, "session": live.session,
                                     "usage": {"seconds": max(live.seconds, 15)}})  # fmt: skip
        for socket in list(live.sockets):
            with contextlib.suppress(Exception):
                await socket.close(1000)
        if live.peer is not None:
            await live.peer.close()

    async def show_all(self, request: Request) -> Response:
        sessions = list(self.sessions.values())
        if request.query_params.get("summary"):
            reverts = [s.reverted_after for s in sessions if s.reverted_after is not None]
            return JSONResponse({
                "sessions": len(sessions), "live": sum(s.live for s in sessions),
                "sidebands": sum(len(s.sockets) for s in sessions),
                "reattached": sum(s.connects >= 2 and bool(s.sockets) for s in sessions),
                "watched_twice": sum(s.most_sidebands > 1 for s in sessions),
                "drifted": sum(s.drifted_at is not None for s in sessions),
                "revert_seconds": reverts,
                "close_seconds": [s.closed_after for s in sessions if s.closed_after is not None],
            })  # fmt: skip
        return JSONResponse({"sessions": [s.state() for s in sessions]})

    async def load(self, request: Request) -> Response:
        """The load benchmark's model: ``{"usage": N, "step": S}`` sends N cumulative usage
        figures round-robin over the live sessions (each S seconds more than its last), as
        fast as they go; ``{"spend": [id, …], "seconds": S}`` reports S more seconds on each
        of those sessions, one every 5 ms (the time to a sideband's ``session.close`` is
        timed); ``{"drift": M, "every_ms": T, "usage_every_ms": U}`` drifts M
        sessions' delegation one every T ms (the revert's arrival is timed) while usage
        figures go out every U ms, as real sessions send them."""
        body = await request.json()
        targets = [s for s in self.sessions.values() if s.live and s.sockets]
        started, sent = time.perf_counter(), 0
        if body.get("usage"):
            step = int(body.get("step", 1))
            for i in range(int(body["usage"])):
                live = targets[i % len(targets)]
                live.seconds += step
                sent += await self._broadcast(live, self._usage_event(live))
        for session_id in body.get("spend", []):  # usage past the budget, timed to the close
            live = self.sessions[session_id]
            live.seconds += int(body["seconds"])
            live.spent_at = time.perf_counter()
            sent += await self._broadcast(live, self._usage_event(live))
            await asyncio.sleep(float(body.get("every_ms", 5)) / 1000)  # the pace it plays
        if body.get("drift"):
            sent += await self._drift(targets, int(body["drift"]), float(body["every_ms"]),
                                      float(body.get("usage_every_ms", 0)))  # fmt: skip
        return JSONResponse({"sent": sent, "seconds": time.perf_counter() - started})

    @staticmethod
    def _usage_event(live: FakeLiveSession) -> dict[str, Any]:
        return {"event_id": events.event_id(), "type": "session.usage.updated",
                "usage": {"seconds": live.seconds}}  # fmt: skip

    async def _drift(self, targets: list[FakeLiveSession], count: int, every_ms: float,
                     usage_every_ms: float) -> int:  # fmt: skip
        sent, next_usage, u = 0, time.perf_counter(), 0
        for i, live in enumerate(targets[:count]):
            drifted = {**live.session, "delegation": {"type": "responses",
                                                      "responses": {"model": "gpt-5"}}}  # fmt: skip
            live.drifted_at = time.perf_counter()
            sent += await self._broadcast(live, {"event_id": events.event_id(),
                                                 "type": "session.updated",
                                                 "session": drifted})  # fmt: skip
            while usage_every_ms and time.perf_counter() >= next_usage:
                other = targets[u % len(targets)]
                other.seconds += 1
                u += 1
                sent += await self._broadcast(other, self._usage_event(other))
                next_usage += usage_every_ms / 1000
            if i + 1 < count:
                await asyncio.sleep(every_ms / 1000)  # the pace this hook plays
        return sent

    async def show(self, request: Request) -> Response:
        live = self.sessions.get(request.path_params["session_id"])
        if live is None:
            return JSONResponse({"error": "no such session"}, 404)
        return JSONResponse(live.state())
