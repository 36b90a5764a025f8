"""The fake upstream's model list: ``GET /v1/models`` (and Azure's ``/openai/v1/models``),
OpenAI's list shape, with the ``shutdown_date`` a test gives a model (Unix seconds)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CURRENT = ("gpt-realtime-2.1", "gpt-realtime-2.1-mini", "gpt-realtime-2", "gpt-live-1.1",
           "gpt-live-1", "gpt-4o-mini-transcribe", "whisper-1", "gpt-5-mini")  # fmt: skip


class FakeModels:
    def __init__(
        self,
        api_key: str | None,
        unauthorized: Callable[[str, str | None], Response | None],
        key_of: Callable[[Any], str],
    ) -> None:
        self._api_key = api_key
        self.reads = 0  # how often the list was asked for (apart from the request log)
        self._unauthorized = unauthorized
        self._key_of = key_of
        self.shutdowns: dict[str, int] = {}  # model -> shutdown_date (Unix seconds)

    def entries(self) -> list[dict[str, Any]]:
        created = int(time.time()) - 86_400
        models = dict.fromkeys(CURRENT) | dict.fromkeys(self.shutdowns)
        return [{"id": model, "object": "model", "created": created, "owned_by": "system",
                 **({"shutdown_date": self.shutdowns[model]} if model in self.shutdowns else {})}
                for model in models]  # fmt: skip

    async def listing(self, request: Request) -> Response:
        self.reads += 1
        refused = self._unauthorized(self._key_of(request.headers), self._api_key)
        if refused is not None:
            return refused
        return JSONResponse({"object": "list", "data": self.entries()})

    def routes(self) -> list[Route]:
        return [Route("/v1/models", self.listing, methods=["GET"]),
                Route("/openai/v1/models", self.listing, methods=["GET"])]  # fmt: skip
