"""Helpers for live-call tests: create calls through a broker, play the browser and the
model through the fake upstream's control hooks, read what happened."""

from __future__ import annotations

import json
import re
import uuid
from importlib import resources
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families

from conftest import make_token
from servers import TokenbrokerServer, wait_until

OFFER = "\r\n".join([
    "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "a=group:BUNDLE 0 1", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=sendrecv",
    "a=rtpmap:111 opus/48000/2", "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "a=mid:1", "a=sctp-port:5000", "",
])  # fmt: skip


def schema(component: str) -> Draft202012Validator:
    """A validator for a component of the calls reference (independent of the broker)."""
    text = resources.files("tokenbroker").joinpath("schemas", "realtime-calls.json").read_text()
    return Draft202012Validator({**json.loads(text), "$ref": f"#/$defs/{component}"})


def user() -> str:
    return f"user-{uuid.uuid4().hex[:10]}"


def auth(sub: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(sub, **claims)}"}


def create_call(
    broker: TokenbrokerServer, sub: str, session: dict[str, Any] | None = None, **claims: Any
) -> httpx.Response:
    """``POST /v1/realtime/calls``: the offer alone, or multipart with a session."""
    headers = auth(sub, **claims)
    if session is None:
        return httpx.post(f"{broker.url}/v1/realtime/calls", content=OFFER,
                          headers={**headers, "Content-Type": "application/sdp"})  # fmt: skip
    files = {"sdp": (None, OFFER, "application/sdp"),
             "session": (None, json.dumps(session), "application/json")}  # fmt: skip
    return httpx.post(f"{broker.url}/v1/realtime/calls", files=files, headers=headers)


def call_id(reply: httpx.Response) -> str:
    assert reply.status_code == 201, reply.text
    location = reply.headers["location"]
    assert re.fullmatch(r"/v1/realtime/calls/rtc_[0-9a-f]+", location)
    return location.rsplit("/", 1)[1]


class Fake:
    """The fake upstream's calls, seen and driven from the test."""

    def __init__(self, url: str, server: TokenbrokerServer | None = None) -> None:
        self.url = url
        self.server = server  # its output holds the fake's access log

    def call(self, cid: str) -> dict[str, Any]:
        reply = httpx.get(f"{self.url}/_fake/calls/{cid}")
        reply.raise_for_status()
        state: dict[str, Any] = reply.json()
        return state

    def browser(self, cid: str, session: dict[str, Any]) -> dict[str, Any]:
        """The browser sends ``session.update`` on its data channel."""
        event = {"type": "session.update", "session": {"type": "realtime", **session}}
        reply = httpx.post(f"{self.url}/_fake/calls/{cid}/browser", json=event)
        reply.raise_for_status()
        return reply.json()  # type: ignore[no-any-return]

    def response_done(
        self, cid: str, event_id: str, *, text_in: int = 0, audio_in: int = 0,
        text_out: int = 0, audio_out: int = 0, cached_text: int = 0,
    ) -> int:  # fmt: skip
        """The model finishes a response with this usage; how many sidebands got it."""
        inputs, outputs = text_in + audio_in, text_out + audio_out
        event = {
            "event_id": event_id, "type": "response.done",
            "response": {
                "object": "realtime.response", "id": f"resp_{uuid.uuid4().hex[:8]}",
                "status": "completed", "output": [],
                "usage": {
                    "total_tokens": inputs + outputs, "input_tokens": inputs,
                    "output_tokens": outputs,
                    "input_token_details": {
                        "text_tokens": text_in, "audio_tokens": audio_in,
                        "cached_tokens": cached_text,
                        "cached_tokens_details": {"text_tokens": cached_text, "audio_tokens": 0},
                    },
                    "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
                },
            },
        }  # fmt: skip
        schema("RealtimeServerEventResponseDone").validate(event)
        reply = httpx.post(f"{self.url}/_fake/calls/{cid}/emit", json=event)
        reply.raise_for_status()
        return int(reply.json()["delivered"])

    def leave(self, cid: str) -> None:
        httpx.post(f"{self.url}/_fake/calls/{cid}/leave").raise_for_status()

    def refuse(self, cid: str, code: str) -> None:
        """The upstream refuses the next session.update from a sideband with ``code``."""
        httpx.post(f"{self.url}/_fake/calls/{cid}/refuse", json={"code": code}).raise_for_status()

    def drop(self, cid: str) -> None:
        httpx.post(f"{self.url}/_fake/calls/{cid}/drop").raise_for_status()

    def watched(self, cid: str, connects: int = 1, limit: float = 10.0) -> None:
        """Wait until the call's sideband has been opened ``connects`` times and is open."""
        wait_until(lambda: (s := self.call(cid))["connects"] >= connects and s["sidebands"] >= 1,
                   limit)  # fmt: skip

    def ended(self, cid: str, limit: float = 10.0) -> dict[str, Any]:
        wait_until(lambda: not self.call(cid)["live"], limit)
        return self.call(cid)


def metric(broker: TokenbrokerServer, name: str, **labels: str) -> float:
    """The sum of the broker's /metrics samples of ``name`` whose labels include
    ``labels`` (0 when there are none)."""
    text = httpx.get(f"{broker.url}/metrics").text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                total += sample.value
    return total
