"""An API family's sessions over HTTP, OpenAI-shaped: ``POST /v1/{family}/sessions`` (JSON
in, 201 out: GPT-Live's ``{"session", "transport"}``, the official SDKs' ``client.live
.create``), and the owner's ``GET`` and ``DELETE`` of ``/v1/{family}/sessions/{id}``. The
family's flow (``Runtime.families``, tokenbroker.families) does the rest; a family this
replica does not serve (its upstream dialect lacks the API) is a clear 400."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tokenbroker.errors import InvalidRequest
from tokenbroker.flow.context import RequestContext
from tokenbroker.flow.runtime import Runtime, SessionFamily
from tokenbroker.http.body import read_json_bytes
from tokenbroker.infra import fast_json

FAMILIES = {"live": "GPT-Live"}  # the session families, by their path segment: their names


def path_of(family: str) -> str:
    return f"/v1/{family}/sessions"


def _family(runtime: Runtime, name: str) -> SessionFamily:
    family = runtime.families.get(name)
    if family is None:
        dialect = runtime.settings.upstream.dialect
        message = f"This broker's upstream dialect ({dialect}) has no {FAMILIES[name]} API."
        raise InvalidRequest(f"{name}_not_available", message)
    return family


def session_routes(name: str) -> list[Route]:
    """The owner's GET and DELETE of one family's session (creation is a hot route)."""

    async def owner(request: Request) -> Response:
        family = _family(request.app.state.runtime, name)
        act = family.info if request.method == "GET" else family.end
        context: RequestContext = request.scope["state"]["context"]
        authorization = request.headers.getlist("authorization")
        return JSONResponse(await act(authorization, request.path_params["session_id"], context))

    return [Route(f"{path_of(name)}/{{session_id}}", owner, methods=["GET", "DELETE"])]


class CreateSessionRoute:
    """``POST /v1/{family}/sessions`` as a plain ASGI app, like the mint routes."""

    def __init__(self, name: str) -> None:
        self._name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime: Runtime = scope["app"].state.runtime
        context: RequestContext = scope["state"]["context"]
        context.mint, context.success = True, f"{self._name}_started"
        headers = scope["headers"]
        family = _family(runtime, self._name)
        raw = await read_json_bytes(headers, receive, runtime.settings.http.max_body_bytes)
        authorization = [value.decode("latin-1") for name, value in headers
                         if name == b"authorization"]  # fmt: skip
        reply = await family.create(authorization, raw, context)
        response = Response(fast_json.dumps(reply.body), reply.status, headers=reply.headers,
                            media_type="application/json")  # fmt: skip
        await response(scope, receive, send)
