"""``openai`` and ``azure``: the GA ``POST /realtime/client_secrets`` and its session shape.

The enforced session uses the seed's field names; :func:`to_ga` writes them where the GA
session has them (``audio.input`` / ``audio.output``, ``output_modalities``,
``max_output_tokens``) and adds the GA-only fields. :func:`from_ga` is the way back, for
requests that arrive in the GA shape. A field GA has no place for (``temperature``) is
returned by name so the reply's ``Policy-Adjusted`` says it was not sent.
"""

from __future__ import annotations

import re
from typing import Any

from tokenbroker.families.realtime.dialects.base import Dialect
from tokenbroker.families.realtime.session import GA_FORMATS, SEED_FORMAT

INPUT = {  # seed field -> audio.input field
    "input_audio_transcription": "transcription",
    "turn_detection": "turn_detection",
    "input_audio_noise_reduction": "noise_reduction",
}
TURN_DETECTION_KEYS = {  # what each GA turn-detection type takes
    "server_vad": {"type", "threshold", "prefix_padding_ms", "silence_duration_ms",
                   "create_response", "interrupt_response", "idle_timeout_ms"},
    "semantic_vad": {"type", "eagerness", "create_response", "interrupt_response"},
}  # fmt: skip
TOP_LEVEL_GA = ("tracing", "reasoning", "prompt", "include", "truncation", "parallel_tool_calls")


# Where a GA request has the field a seed name or GA-only key stands for: the paths
# :func:`from_ga` reads. Refusals and Policy-Adjusted answer a GA request in its own paths.
GA_PATHS = {
    **{key: f"session.{key}" for key in ("model", "instructions", "tools", "tool_choice")},
    "modalities": "session.output_modalities",
    "max_response_output_tokens": "session.max_output_tokens",
    "input_audio_format": "session.audio.input.format",
    **{seed: f"session.audio.input.{ga}" for seed, ga in INPUT.items()},
    "output_audio_format": "session.audio.output.format",
    "voice": "session.audio.output.voice",
    "speed": "session.audio.output.speed",
    **{key: f"session.{key}" for key in TOP_LEVEL_GA},
    "expires_after": "expires_after.seconds",
}
_HEAD = re.compile(r"[a-z_]+")


def ga_path(name: str) -> str:
    """``name`` (a seed field or GA-only key, with any tail: ``tools[0]``,
    ``turn_detection.eagerness``) as the GA request's path; a name GA has no place for
    (``temperature``), or one that is a GA path already, stays as it is."""
    if name.startswith(("session.", "expires_after.")):
        return name
    head = _HEAD.match(name)
    if head is None or head.group() not in GA_PATHS:
        return name
    return GA_PATHS[head.group()] + name[head.end() :]


def _turn_detection(value: Any, dropped: list[str]) -> Any:
    if not isinstance(value, dict):
        return value
    keys = TURN_DETECTION_KEYS.get(value.get("type", "server_vad"), set(value))
    dropped += [f"turn_detection.{k}" for k in sorted(set(value) - keys)]
    return {k: v for k, v in value.items() if k in keys}


def to_ga(
    session: dict[str, Any], ga_only: dict[str, Any]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The GA request body for an enforced session, and the fields GA has no place for."""
    dropped: list[str] = []
    out: dict[str, Any] = {"type": ga_only.get("type", "realtime")}
    for key in ("model", "instructions", "tools", "tool_choice"):
        if key in session:
            out[key] = session[key]
    if "modalities" in session:
        out["output_modalities"] = ["text"] if set(session["modalities"]) == {"text"} else ["audio"]
    if "max_response_output_tokens" in session:
        out["max_output_tokens"] = session["max_response_output_tokens"]
    audio_in: dict[str, Any] = {}
    audio_out: dict[str, Any] = {}
    if "input_audio_format" in session:
        audio_in["format"] = GA_FORMATS[session["input_audio_format"]]
    for seed, ga in INPUT.items():
        if seed in session:
            audio_in[ga] = session[seed]
    if "turn_detection" in audio_in:
        audio_in["turn_detection"] = _turn_detection(audio_in["turn_detection"], dropped)
    if "output_audio_format" in session:
        audio_out["format"] = GA_FORMATS[session["output_audio_format"]]
    if "voice" in session:
        voice = session["voice"]
        audio_out["voice"] = {"id": voice} if ga_only.get("custom_voice") else voice
    if "speed" in ga_only:
        audio_out["speed"] = ga_only["speed"]
    audio = {k: v for k, v in (("input", audio_in), ("output", audio_out)) if v}
    if audio:
        out["audio"] = audio
    for key in TOP_LEVEL_GA:
        if key in ga_only:
            out[key] = ga_only[key]
    if out["type"] == "transcription":  # a transcription session has audio input only
        out = {k: v for k, v in out.items() if k in ("type", "audio", "include")}
        out.get("audio", {}).pop("output", None)
    if "temperature" in session:
        dropped.append("temperature")
    body: dict[str, Any] = {"session": out}
    if "expires_after" in ga_only:
        body["expires_after"] = {"anchor": "created_at", "seconds": ga_only["expires_after"]}
    return body, tuple(dropped)


def from_ga(ga: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A GA session request as the seed's fields, and its GA-only fields beside them."""
    seed: dict[str, Any] = {}
    ga_only: dict[str, Any] = {"type": ga.get("type", "realtime")}
    for key in ("model", "instructions", "tools", "tool_choice"):
        if key in ga:
            seed[key] = ga[key]
    if "output_modalities" in ga:
        modalities = ga["output_modalities"]
        seed["modalities"] = ["text"] if modalities == ["text"] else ["audio", "text"]
    if "max_output_tokens" in ga:
        seed["max_response_output_tokens"] = ga["max_output_tokens"]
    audio = ga.get("audio") or {}
    audio_in, audio_out = audio.get("input") or {}, audio.get("output") or {}
    if "format" in audio_in:
        seed["input_audio_format"] = SEED_FORMAT[audio_in["format"]["type"]]
    for seed_key, ga_key in INPUT.items():
        if ga_key in audio_in:
            seed[seed_key] = audio_in[ga_key]
    if "format" in audio_out:
        seed["output_audio_format"] = SEED_FORMAT[audio_out["format"]["type"]]
    if "voice" in audio_out:
        voice = audio_out["voice"]
        if isinstance(voice, dict):
            seed["voice"], ga_only["custom_voice"] = voice["id"], True
        else:
            seed["voice"] = voice
    if "speed" in audio_out:
        ga_only["speed"] = audio_out["speed"]
    for key in TOP_LEVEL_GA:
        if key in ga:
            ga_only[key] = ga[key]
    return seed, ga_only


def _secret(reply: Any) -> Any:
    return reply


def _session(reply: Any) -> Any:
    return reply.get("session")


OPENAI = Dialect("openai", "/realtime/client_secrets", "Authorization", to_ga, _secret, _session)
AZURE = Dialect("azure", "/realtime/client_secrets", "api-key", to_ga, _secret, _session)
