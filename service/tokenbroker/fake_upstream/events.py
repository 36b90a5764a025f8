"""What the fake upstream says: server events, session objects as the upstream reports
them, and a canned SDP answer (for offers no real peer answers). Pure data."""

from __future__ import annotations

import secrets
import time
from typing import Any

RESPONSE_KEYS = ("type", "model", "output_modalities", "instructions", "tools", "tool_choice",
                 "max_output_tokens", "tracing", "prompt", "include", "truncation", "reasoning",
                 "audio")  # fmt: skip


def event_id() -> str:
    return f"event_{secrets.token_hex(8)}"


def error_event(
    code: str, message: str, param: str | None = None, cause: Any = None
) -> dict[str, Any]:
    """An ``error`` server event; ``cause`` is the client event's ``event_id`` if it had one."""
    return {"event_id": event_id(), "type": "error",
            "error": {"type": "invalid_request_error", "code": code, "message": message,
                      "param": param,
                      "event_id": cause if isinstance(cause, str) else None}}  # fmt: skip


def response_session(request: dict[str, Any]) -> dict[str, Any]:
    """The session as the upstream reports it: the request's fields over its defaults."""
    session: dict[str, Any] = {
        "type": "realtime", "object": "realtime.session", "id": f"sess_{secrets.token_hex(8)}",
        "model": "gpt-realtime-2.1", "output_modalities": ["audio"], "instructions": "",
        "tools": [], "tool_choice": "auto", "max_output_tokens": "inf", "tracing": None,
        "prompt": None, "include": None, "expires_at": int(time.time()) + 3600,
        "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                            "transcription": None, "noise_reduction": None,
                            "turn_detection": {"type": "server_vad", "threshold": 0.5,
                                               "prefix_padding_ms": 300,
                                               "silence_duration_ms": 200}},
                  "output": {"format": {"type": "audio/pcm", "rate": 24000},
                             "voice": "marin", "speed": 1.0}},
    }  # fmt: skip
    apply(session, request)
    return session


def apply(session: dict[str, Any], update: dict[str, Any]) -> None:
    for key in RESPONSE_KEYS:
        if key not in update:
            continue
        if key == "audio" and isinstance(update["audio"], dict):
            for side, values in update["audio"].items():
                session.setdefault("audio", {}).setdefault(side, {}).update(values or {})
        else:
            session[key] = update[key]


def response_id() -> str:
    return f"resp_{secrets.token_hex(6)}"


def response_created(response: str) -> dict[str, Any]:
    return {"event_id": event_id(), "type": "response.created",
            "response": {"object": "realtime.response", "id": response,
                         "status": "in_progress", "output": []}}  # fmt: skip


def response_done(
    text_in: int, audio_out: int, response: str | None = None, status: str = "completed"
) -> dict[str, Any]:
    usage = {"total_tokens": text_in + audio_out, "input_tokens": text_in,
             "output_tokens": audio_out,
             "input_token_details": {"text_tokens": text_in, "audio_tokens": 0},
             "output_token_details": {"text_tokens": 0, "audio_tokens": audio_out}}  # fmt: skip
    return {"event_id": event_id(), "type": "response.done",
            "response": {"object": "realtime.response", "id": response or response_id(),
                         "status": status, "output": [], "usage": usage}}  # fmt: skip


def answer_for(call_id: str) -> str:
    return "\r\n".join(("v=0", f"o=- {secrets.randbelow(10**9)} 1 IN IP4 127.0.0.1", "s=-",
                        "t=0 0", "a=group:BUNDLE 0 1", f"a=msid-semantic:WMS {call_id}",
                        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=setup:active",
                        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "a=mid:1",
                        "a=sctp-port:5000", ""))  # fmt: skip
