"""The Starlette application: routes, the one error handler, CORS, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenbroker.config.settings import Settings
from tokenbroker.errors import BrokerError, MethodNotAllowed, NotFound, error_body, render
from tokenbroker.flow.context import RequestContext
from tokenbroker.flow.runtime import Runtime
from tokenbroker.http.admin import admin_routes
from tokenbroker.http.body import read_json_bytes
from tokenbroker.http.calls import CreateCallRoute, call_routes
from tokenbroker.http.edge import Edge
from tokenbroker.http.sessions import FAMILIES, CreateSessionRoute, path_of, session_routes
from tokenbroker.infra import fast_json
from tokenbroker.infra.audit import AuditTrail
from tokenbroker.infra.logs import AccessLog
from tokenbroker.infra.loop_errors import QuietLoopErrors
from tokenbroker.infra.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from tokenbroker.infra.metrics import Metrics

RuntimeFactory = Callable[[Settings, Metrics], AbstractAsyncContextManager[Runtime]]
LOOPBACK_ORIGIN = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"
# What a browser may send: ours, and what the official JS SDKs add to every request (the
# openai SDK's platform and retry headers, OpenAI-Beta on the beta endpoints, the
# organisation and project when set; the Agents SDK's version on its WebRTC offer); the
# broker reads none of theirs, but a preflight that refused them would fail every call.
ALLOWED_HEADERS = [
    "Authorization",
    "Content-Type",
    "X-Request-ID",
    "OpenAI-Beta",
    "OpenAI-Organization",
    "OpenAI-Project",
    "X-OpenAI-Agents-SDK",
    "X-Stainless-Arch",
    "X-Stainless-Helper-Method",
    "X-Stainless-Lang",
    "X-Stainless-OS",
    "X-Stainless-Package-Version",
    "X-Stainless-Retry-Count",
    "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version",
    "X-Stainless-Timeout",
]
EXPOSED_HEADERS = [
    "X-Request-ID",
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
    "Policy-Adjusted",
    "Location",
]


def error_response(error: BrokerError) -> Response:
    """The only place an error becomes a reply."""
    return Response(
        render(error), error.status, headers=error.headers, media_type="application/json"
    )


async def handle_broker_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BrokerError)
    context: RequestContext | None = request.scope.get("state", {}).get("context")
    if context is not None:
        context.error = exc  # the edge turns it into the outcome
    return error_response(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error: BrokerError = MethodNotAllowed(
            "method_not_allowed",
            f"{request.method} is not allowed on {request.url.path}.",
            headers=dict(exc.headers or {}),
        )
    else:
        error = NotFound("not_found", f"No such endpoint: {request.url.path}.")
    return error_response(error)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


class MintRoute:
    """A mint endpoint as a plain ASGI app: the hot path skips Starlette's Request object
    and the per-route exception wrapper (its errors still reach the app's one handler,
    which renders them): ~10 µs less CPU per mint (docs/performance.md). The API family
    gives the flow for the route's ``path`` (``Runtime.mints``)."""

    def __init__(self, path: str) -> None:
        self._path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime: Runtime = scope["app"].state.runtime
        context: RequestContext = scope["state"]["context"]
        context.mint = True  # the route, not the path, says what a request is
        headers = scope["headers"]
        body = await read_json_bytes(headers, receive, runtime.settings.http.max_body_bytes)
        authorization = [value.decode("latin-1") for name, value in headers
                         if name == b"authorization"]  # fmt: skip
        reply = await runtime.mints[self._path](authorization, body, context)
        response = Response(
            fast_json.dumps(reply.body),
            200,
            headers=reply.headers,
            media_type="application/json",
        )
        await response(scope, receive, send)


class DirectRoutes:
    """The hot routes (the mint endpoints and call creation), reached before Starlette's
    router and its exception middleware: no route matching over every path and one send
    wrapper less per reply. A BrokerError they raise becomes the reply here, as the app's
    handler would make it; everything else goes on to the router (405s included)."""

    def __init__(self, app: ASGIApp, routes: dict[str, ASGIApp]) -> None:
        self.app = app
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            await route(scope, receive, send)
        except BrokerError as exc:
            scope["state"]["context"].error = exc  # the edge turns it into the outcome
            await error_response(exc)(scope, receive, send)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    return Response(registry.render(), media_type=METRICS_CONTENT_TYPE)


async def readyz(request: Request) -> Response:
    ready, reason = await _runtime(request).ready()
    cache = _runtime(request).broker.policies
    body: dict[str, Any] = {"ready": ready, "reason": reason, "policy_version": cache.version,
                            "policy_digest": cache.digest}  # fmt: skip
    return JSONResponse(body, 200 if ready else 503)


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in the error envelope."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        reason = bytes(response.body).decode(errors="replace")
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("content-type", "content-length")}  # fmt: skip
        body = error_body("invalid_request_error", "cors_not_allowed", f"{reason}.", None)
        return Response(body, 400, headers=headers, media_type="application/json")


def _audit_of(scope: Scope) -> AuditTrail | None:
    """The running app's audit trail (Starlette puts the app in every scope)."""
    runtime: Runtime | None = getattr(scope["app"].state, "runtime", None)
    return runtime.audit if runtime is not None else None


def create_app(
    settings: Settings,
    runtime_factory: RuntimeFactory,
    *,
    index_html: Callable[[], str] | None = None,
) -> Starlette:
    registry = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with runtime_factory(settings, registry) as runtime:
            app.state.runtime = runtime
            asyncio.get_running_loop().set_exception_handler(QuietLoopErrors())
            # What start-up made (modules, settings, policies, clients) lives as long as
            # the process: moved out of the collector's sight, so a full collection no
            # longer walks it (those pauses, 20-70 ms, were the one-connection p99).
            gc.freeze()
            # A mint allocates hundreds of objects and leaves no cycles behind: a young
            # collection every 20 000 allocations instead of every 700 (~7 % less CPU
            # per mint, docs/performance.md); the older generations keep their pace.
            gc.set_threshold(20_000, 10, 10)
            yield

    hot: dict[str, ASGIApp] = {
        "/v1/realtime/sessions": MintRoute("/v1/realtime/sessions"),
        "/v1/realtime/client_secrets": MintRoute("/v1/realtime/client_secrets"),
        "/v1/realtime/calls": CreateCallRoute(),
        **{path_of(name): CreateSessionRoute(name) for name in FAMILIES},
    }
    routes = [
        *(Route(path, app, methods=["POST"]) for path, app in hot.items()),
        *call_routes(),
        *(route for name in FAMILIES for route in session_routes(name)),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if settings.admin_token:
        routes += admin_routes(settings.admin_token)
    if index_html is not None:
        page = index_html

        async def index(request: Request) -> Response:
            return HTMLResponse(page())

        routes.append(Route("/", index, methods=["GET"]))

    middleware = [
        Middleware(
            Edge,
            metrics=registry,
            audit=_audit_of,
            access=AccessLog(settings.log.format, settings.log.level),
        ),
        Middleware(
            JsonCORSMiddleware,
            allow_origins=list(settings.cors.allowed_origins),
            allow_origin_regex=LOOPBACK_ORIGIN if settings.cors.allow_loopback else None,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=600,
        ),
        Middleware(DirectRoutes, routes=hot),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={BrokerError: handle_broker_error, HTTPException: handle_http_exception},
        lifespan=lifespan,
    )
    app.state.metrics = registry
    # No redirect to the same path with(out) a trailing slash: Starlette builds its Location
    # from the request's Host header. An unknown path is a 404 in the envelope.
    app.router.redirect_slashes = False
    return app
