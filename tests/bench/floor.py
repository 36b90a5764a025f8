"""The benchmark's floor: forward the body to the upstream and return the secret, nothing
else (no auth, no policy, no limits), with the broker's HTTP client and server settings;
and a bare GPT-Live relay beside it (``POST /v1/live/sessions`` forwarded as it came)."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokenbroker.server import run
from tokenbroker.upstream.client import Connection, make_client


def create_floor(upstream_url: str, api_key: str) -> Starlette:
    headers = {"Authorization": f"Bearer {api_key}"}
    url = f"{upstream_url}/realtime/sessions"

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with make_client(Connection(connect_timeout=2)) as client:
            app.state.client = client
            yield

    async def mint(request: Request) -> Response:
        body = await request.body()
        call = request.app.state.client.post(url).headers(headers).body_bytes(body or b"{}")
        reply = await call.build().send()
        status, session = reply.status, json.loads((await reply.bytes()).to_bytes())
        out = {"client_secret": session["client_secret"], "model": session["model"]}
        return Response(json.dumps(out), status, media_type="application/json")

    live_url = f"{upstream_url}/live/sessions"
    json_headers = {**headers, "Content-Type": "application/json"}

    async def live(request: Request) -> Response:
        """A bare GPT-Live relay: the body as it came, the upstream's reply as it came."""
        body = await request.body()
        call = request.app.state.client.post(live_url).headers(json_headers).body_bytes(body)
        reply = await call.build().send()
        content = (await reply.bytes()).to_bytes()
        return Response(content, reply.status, media_type="application/json")

    return Starlette(
        routes=[Route("/v1/realtime/sessions", mint, methods=["POST"]),
                Route("/v1/live/sessions", live, methods=["POST"])],
        lifespan=lifespan,
    )  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--api-key", default="sk-bench")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    from tokenbroker.infra.logs import configure_logging

    configure_logging("warning", "json")
    import logging

    logging.getLogger("uvicorn.error").setLevel(logging.INFO)
    run(create_floor(args.upstream, args.api_key), "127.0.0.1", args.port, grace=1)
