"""The fake upstream's GPT-Live sessions: ``POST /v1/live/sessions`` (and Azure's
``/openai/v1/live/sessions``, which takes the key as ``api-key`` or as a bearer token: the
docs show only the bearer), the body checked against the schema derived from the SDK's
types. A real browser's offer gets a real WebRTC peer (aiortc): on its data channel the
session starts (``session.started``), and the permissions it was created with hold as the
real service enforces them: a client event outside ``allowed_client_events`` is refused
with an ``error`` (``event_not_allowed``), and only ``allowed_server_events`` reach the
browser. ``GET /_fake/live`` and ``/_fake/live/{id}``: what the sessions were sent.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tokenbroker.fake_upstream import events
from tokenbroker.fake_upstream.peer import FakePeer, can_answer


@dataclass
class FakeLiveSession:
    session_id: str
    session: dict[str, Any]
    from_browser: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # client event types refused
    to_browser: list[str] = field(default_factory=list)  # server event types delivered
    live: bool = True
    peer: FakePeer | None = None

    def state(self) -> dict[str, Any]:
        return {"id": self.session_id, "session": self.session, "live": self.live,
                "from_browser": self.from_browser, "refused": self.refused,
                "to_browser": self.to_browser, "webrtc": self.peer is not None}  # fmt: skip

    def _channel(self) -> dict[str, Any]:
        return ((self.session.get("client") or {}).get("data_channel")) or {}

    def client_may(self, kind: Any) -> bool:
        allowed = self._channel().get("allowed_client_events", "all")  # omitted: all
        return allowed == "all" or kind in allowed

    def server_may(self, kind: str) -> bool:
        allowed = self._channel().get("allowed_server_events", "all")
        return allowed == "all" or any(s.get("type") == kind for s in allowed)


class FakeLive:
    def __init__(self) -> None:
        self.sessions: dict[str, FakeLiveSession] = {}

    def routes(self) -> list[BaseRoute]:
        return [Route("/_fake/live", self.list, methods=["GET"]),
                Route("/_fake/live/{session_id}", self.show, methods=["GET"])]  # fmt: skip

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
                                 lambda: self._started(live), lambda: self._end(live))  # fmt: skip
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
            await self._end(live)

    async def _end(self, live: FakeLiveSession) -> None:
        if live.live:
            live.live = False
            self._send(live, {"event_id": events.event_id(), "type": "session.closed",
                              "reason": "close_requested", "session": live.session,
                              "usage": {"seconds": 15}})  # fmt: skip
            if live.peer is not None:
                await live.peer.close()

    async def list(self, request: Request) -> Response:
        return JSONResponse({"sessions": [s.state() for s in self.sessions.values()]})

    async def show(self, request: Request) -> Response:
        live = self.sessions.get(request.path_params["session_id"])
        if live is None:
            return JSONResponse({"error": "no such session"}, 404)
        return JSONResponse(live.state())
