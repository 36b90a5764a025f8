"""The upstream's GPT-Live sessions with the real key: ``POST {url}/live/sessions`` with
``{"session", "transport": {"type": "webrtc", "sdp"}}``, 201 with the session's id and
the SDP answer. The same relative path serves OpenAI and Azure (whose ``url`` is
``https://{resource}.openai.azure.com/openai/v1``). Azure's GPT-Live examples all send the
key as ``Authorization: Bearer`` (not ``api-key``, as Realtime on Azure does), so a key
goes as a bearer token here whatever the dialect. Sent with the mints' client, deadline
and breaker (``Upstream.post``), not retried: a session created twice would be a session
nobody asked for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tokenbroker.upstream.client import Upstream
from tokenbroker.upstream.failures import Failure, Kind
from tokenbroker.upstream.sideband import CALL_ID


@dataclass(frozen=True, slots=True)
class CreatedSession:
    session_id: str
    answer: str


class LiveUpstream:
    def __init__(self, upstream: Upstream) -> None:
        self._up = upstream

    async def create(self, session: dict[str, Any], sdp: str) -> CreatedSession:
        """The session the upstream created, or :class:`UpstreamError`."""
        body = {"session": session, "transport": {"type": "webrtc", "sdp": sdp}}
        return await self._up.post("/live/sessions", body, _created, retry=False, bearer=True)


def _created(content: bytes) -> CreatedSession | Failure:
    try:
        reply = json.loads(content)
        session_id, answer = reply["session"]["id"], reply["transport"]["sdp"]
    except (ValueError, KeyError, TypeError):
        return Failure(Kind.INVALID)
    if not isinstance(session_id, str) or not CALL_ID.match(session_id):
        return Failure(Kind.INVALID)
    if not isinstance(answer, str) or not answer.startswith("v=0"):
        return Failure(Kind.INVALID)
    return CreatedSession(session_id, answer)
