"""The fake upstream's calls: ``POST /v1/realtime/calls`` (multipart ``sdp`` + ``session``,
or ``application/sdp``), ``POST /v1/realtime/calls/{id}/hangup`` and the sideband
WebSocket ``/v1/realtime?call_id=…`` (each also under Azure's ``/openai`` prefix).

Bodies and sideband events from the broker are checked against the official schemas
(jsonschema, :mod:`.validate`): an invalid ``session.update`` gets an ``error`` event and
changes nothing. Control hooks play the two other parties of a call:

- ``POST /_fake/calls/{id}/browser``: a client event as if sent on the data channel
  (``session.update`` applies and every sideband gets ``session.updated``);
- ``POST /_fake/calls/{id}/emit``: a server event to every sideband (``response.done``);
- ``POST /_fake/calls/{id}/refuse`` ``{"code": …}``: the next ``session.update`` from a
  sideband is refused with an ``error`` naming its ``event_id`` (as the upstream refuses a
  voice change once the model has spoken: ``cannot_update_voice``);
- ``POST /_fake/calls/{id}/leave``: the browser leaves (the call ends);
- ``POST /_fake/calls/{id}/drop``: the sidebands are closed abnormally (1011), the call goes on;
- ``GET /_fake/calls/{id}`` and ``GET /_fake/calls``: what happened to the calls
  (``?summary=1``: counts only);
- ``POST /_fake/responses`` ``{"calls": [id, …], "count": N, "tokens": T, "every_ms": M,
  "cancelled_tokens": C}``: on each call the page starts N responses at once
  (``response.created`` for each); one finishes every M ms with T input tokens
  (``response.done``) while the call is live. A ``response.cancel`` from a sideband (its
  ``response_id``, or every response in flight) finishes them at once as ``cancelled``
  with the C tokens they had used; a hang-up drops the rest. ``GET`` shows the tokens
  reported to a sideband (``reported_tokens``) and when each cancel arrived;
- ``POST /_fake/burst`` ``{"events": N, "tokens": T}``: N ``response.done`` events of T
  input tokens each, round-robin over the live calls' sidebands, as fast as they go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tokenbroker.fake_upstream import events
from tokenbroker.fake_upstream.call_load import CallLoad
from tokenbroker.fake_upstream.peer import FakePeer, can_answer
from tokenbroker.fake_upstream.sideband import admit, fan_out
from tokenbroker.fake_upstream.validate import (
    CALL_CREATE,
    SESSION_UPDATE,
    Refused,
    check,
    check_event,
)


@dataclass
class FakeCall:
    call_id: str
    session: dict[str, Any]
    live: bool = True
    ended_by: str | None = None  # hangup | browser
    hangups: int = 0
    connects: int = 0
    sockets: set[WebSocket] = field(default_factory=set)
    from_sideband: list[dict[str, Any]] = field(default_factory=list)
    from_browser: list[dict[str, Any]] = field(default_factory=list)  # its data channel
    peer: FakePeer | None = None  # a real WebRTC peer, for a real browser's offer
    refuse: str | None = None  # the error code the next sideband session.update gets
    in_flight: dict[str, int] = field(default_factory=dict)  # response id -> tokens if cancelled
    reported_tokens: int = 0  # the usage of every response.done sent
    completed: int = 0
    cancelled: int = 0
    cancel_times: list[float] = field(default_factory=list)  # when each response.cancel came
    spans: list[list[float | None]] = field(default_factory=list)  # each sideband's open, close
    most_sidebands: int = 0  # the most sidebands ever open at once (1: never watched twice)

    def state(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "live": self.live, "ended_by": self.ended_by,
                "hangups": self.hangups, "connects": self.connects, "sidebands": len(self.sockets),
                "session": self.session, "from_sideband": self.from_sideband,
                "from_browser": self.from_browser, "webrtc": self.peer is not None,
                "spans": self.spans, "most_sidebands": self.most_sidebands,
                "reported_tokens": self.reported_tokens, "completed": self.completed,
                "cancelled": self.cancelled, "in_flight": len(self.in_flight),
                "cancel_times": self.cancel_times}  # fmt: skip


class FakeCalls(CallLoad):
    def __init__(self, api_key: str | None, error: Any, unauthorized: Any, key_of: Any) -> None:
        self.calls: dict[str, FakeCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._api_key = api_key
        self._error = error
        self._unauthorized = unauthorized
        self._key_of = key_of

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        for prefix in ("/v1", "/openai/v1"):
            routes += [
                Route(f"{prefix}/realtime/calls", self.create, methods=["POST"]),
                Route(f"{prefix}/realtime/calls/{{call_id}}/hangup", self.hangup, methods=["POST"]),
                WebSocketRoute(f"{prefix}/realtime", self.sideband),
            ]
        return [
            *routes,
            Route("/_fake/calls", self.list, methods=["GET"]),
            Route("/_fake/burst", self.burst, methods=["POST"]),
            Route("/_fake/responses", self.responses, methods=["POST"]),
            Route("/_fake/calls/{call_id}", self.show, methods=["GET"]),
            Route("/_fake/calls/{call_id}/{action}", self.control, methods=["POST"]),
        ]

    async def create(self, request: Request) -> Response:
        refused = self._unauthorized(self._key_of(request.headers), self._api_key)
        if refused is not None:
            return refused  # type: ignore[no-any-return]
        media = request.headers.get("content-type", "").split(";")[0].strip()
        if media == "application/sdp":  # an ephemeral key's call: its session is the key's
            body: dict[str, Any] = {"sdp": (await request.body()).decode()}
        elif media == "multipart/form-data":
            body = {}
            async with request.form(max_files=2, max_fields=4) as form:
                for name, value in form.multi_items():
                    body[name] = (
                        (await value.read()).decode() if isinstance(value, UploadFile) else value
                    )
            if "session" in body:
                try:
                    body["session"] = json.loads(body["session"])
                except ValueError:
                    return self._error(400, "invalid_request_error", "invalid_json",  # type: ignore[no-any-return]
                                       "The session part is not JSON.", "session")  # fmt: skip
        else:
            return self._error(415, "invalid_request_error", "unsupported_media_type",  # type: ignore[no-any-return]
                               "Send application/sdp or multipart/form-data.")  # fmt: skip
        try:
            check(json.dumps(body).encode(), CALL_CREATE)
        except Refused as exc:
            return self._error(400, "invalid_request_error", exc.code, exc.message, exc.param)  # type: ignore[no-any-return]
        if not body["sdp"].startswith("v=0"):
            return self._error(400, "invalid_request_error", "invalid_offer",  # type: ignore[no-any-return]
                               "The SDP offer is not valid.", "sdp")  # fmt: skip
        call_id = f"rtc_{secrets.token_hex(12)}"
        call = FakeCall(call_id, events.response_session(body.get("session") or {}))
        answer = events.answer_for(call_id)
        if can_answer(body["sdp"]):
            call.peer = FakePeer(
                lambda event: self._from_browser(call, event),
                lambda: self._to_browser(call, {"event_id": events.event_id(),
                                                "type": "session.created",
                                                "session": call.session}),
                lambda: self._end(call, "browser"),
            )  # fmt: skip
            answer = await call.peer.answer(body["sdp"])
        self.calls[call_id] = call
        return Response(answer, 201, media_type="application/sdp",
                        headers={"Location": f"/v1/realtime/calls/{call_id}"})  # fmt: skip

    async def hangup(self, request: Request) -> Response:
        refused = self._unauthorized(self._key_of(request.headers), self._api_key)
        if refused is not None:
            return refused  # type: ignore[no-any-return]
        call = self.calls.get(request.path_params["call_id"])
        if call is None:
            return self._error(404, "invalid_request_error", "call_not_found", "No such call.")  # type: ignore[no-any-return]
        call.hangups += 1
        await self._end(call, "hangup")
        return Response(b"", 200)

    async def _end(self, call: FakeCall, by: str) -> None:
        if call.live:
            call.live, call.ended_by = False, by
        for socket in list(call.sockets):
            with contextlib.suppress(Exception):
                await socket.close(1000)
        if call.peer is not None:
            await call.peer.close()

    async def _to_browser(self, call: FakeCall, event: dict[str, Any]) -> None:
        if call.peer is not None:
            call.peer.send(event)

    async def _from_browser(self, call: FakeCall, event: dict[str, Any]) -> None:
        """An event the browser sent on its data channel."""
        call.from_browser.append(event)
        if event.get("type") == "session.update":
            await self._update(call, event, None)
        elif event.get("type") == "response.create":  # a short spoken answer, with usage
            await self._broadcast(call, events.response_done(50, 150))

    async def _broadcast(self, call: FakeCall, event: dict[str, Any]) -> int:
        """A server event to the sidebands and the browser; how many sidebands got it."""
        await self._to_browser(call, event)
        return await fan_out(call, event)

    async def _update(
        self, call: FakeCall, event: dict[str, Any], socket: WebSocket | None
    ) -> None:
        """A ``session.update`` from the browser (socket None) or a sideband."""
        try:
            check_event(event, SESSION_UPDATE)
            if socket is not None and call.refuse is not None:  # the next sideband update
                code, call.refuse = call.refuse, None
                raise Refused(code, None, "The session update was refused.")
        except Refused as exc:
            reply = events.error_event(exc.code, exc.message, exc.param, event.get("event_id"))
            if socket is not None:
                await socket.send_text(json.dumps(reply))
            else:
                await self._to_browser(call, reply)
            return
        events.apply(call.session, event["session"])
        await self._broadcast(call, {"event_id": events.event_id(), "type": "session.updated",
                                     "session": call.session})  # fmt: skip

    async def sideband(self, socket: WebSocket) -> None:
        call = self.calls.get(socket.query_params.get("call_id", ""))
        refused = self._unauthorized(self._key_of(socket.headers), self._api_key) is not None
        if not await admit(socket, call, refused) or call is None:
            return
        span: list[float | None] = [time.time(), None]
        call.spans.append(span)
        try:
            created = {"event_id": events.event_id(), "type": "session.created",
                       "session": call.session}  # fmt: skip
            await socket.send_text(json.dumps(created))
            while True:
                event = json.loads(await socket.receive_text())
                call.from_sideband.append(event)
                if event.get("type") == "session.update":
                    await self._update(call, event, socket)
                elif event.get("type") == "response.cancel":
                    await self._cancel(call, event.get("response_id"))
        except (WebSocketDisconnect, RuntimeError, ValueError):
            pass
        finally:
            call.sockets.discard(socket)
            span[1] = time.time()

    async def list(self, request: Request) -> Response:
        calls = list(self.calls.values())
        if request.query_params.get("summary"):
            return JSONResponse({
                "calls": len(calls), "live": sum(c.live for c in calls),
                "sidebands": sum(len(c.sockets) for c in calls),
                "reattached": sum(c.connects >= 2 and bool(c.sockets) for c in calls),
                "watched_twice": sum(c.most_sidebands > 1 for c in calls),
            })  # fmt: skip
        return JSONResponse({"calls": [c.state() for c in calls]})

    async def show(self, request: Request) -> Response:
        call = self.calls.get(request.path_params["call_id"])
        if call is None:
            return JSONResponse({"error": "no such call"}, 404)
        return JSONResponse(call.state())

    async def control(self, request: Request) -> Response:
        call = self.calls.get(request.path_params["call_id"])
        if call is None:
            return JSONResponse({"error": "no such call"}, 404)
        action = request.path_params["action"]
        if action == "browser":
            await self._update(call, await request.json(), None)
        elif action == "emit":
            return JSONResponse({"delivered": await self._broadcast(call, await request.json())})
        elif action == "refuse":  # the next session.update from a sideband gets an error
            call.refuse = (await request.json())["code"]
        elif action == "leave":
            await self._end(call, "browser")
        elif action == "drop":  # the call goes on; its sidebands see an abnormal close
            for socket in list(call.sockets):
                call.sockets.discard(socket)
                with contextlib.suppress(Exception):
                    await socket.close(1011)
        else:
            return JSONResponse({"error": "unknown action"}, 404)
        return JSONResponse(call.state())
