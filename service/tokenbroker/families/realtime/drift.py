"""Drift: where a live call's session has left its policy, and the update that restores it.

Pure. ``current`` is a session as ``session.created`` / ``session.updated`` show it (the
GA shape); ``enforced`` is the GA session the broker created the call with. A field is a
violation when the policy would not have allowed its current value at creation: fixed
instructions changed, tools the policy does not list, a model, voice, format, modality,
transcription model or noise reduction outside the allowlists, a number outside its
clamp, tracing where it is forbidden (or, where it is forced, gone or under another
workflow name).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from tokenbroker.families.realtime.rules import RealtimeRules, rules_of
from tokenbroker.families.realtime.session import GA_FORMATS, SEED_FORMAT
from tokenbroker.policy.model import NumberRange, Policy

SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")  # a dated snapshot: gpt-realtime-2025-08-28
UNREVERTABLE = ("type", "model")  # session.update cannot change these: hang up instead
CLEARED: dict[str, Any] = {"instructions": "", "tools": [], "tracing": None, "prompt": None}
_ABSENT = object()


def _get(node: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def _inside(value: Any, bounds: NumberRange | None) -> bool:
    if bounds is None or value is None:
        return True
    return isinstance(value, int | float) and bounds.min <= value <= bounds.max


def _model_ok(model: Any, rules: RealtimeRules, enforced: dict[str, Any]) -> bool:
    """An allowed model, or a dated snapshot of one (the upstream names what it runs)."""
    if model is None or model == enforced.get("model"):
        return True
    return isinstance(model, str) and SNAPSHOT.sub("", model) in rules.models


def _instructions_ok(text: Any, rules: RealtimeRules, enforced: dict[str, Any]) -> bool:
    rule = rules.instructions
    text = text or ""
    if not isinstance(text, str):
        return False
    if rule is None or rule.mode == "fixed":
        return bool(text == (enforced.get("instructions") or ""))
    if rule.max_chars is not None and len(text) > rule.max_chars + len(rule.text) + 2:
        return False
    return rule.mode != "prefix" or text.startswith(rule.text)


def _tools_ok(tools: Any, rules: RealtimeRules, enforced: dict[str, Any]) -> bool:
    tools = tools or []
    rule = rules.tools
    if rule.mode == "none":
        return not tools
    if rule.mode == "fixed":
        names = sorted(str(t.get("name")) for t in enforced.get("tools") or [])
        return sorted(str(_get(t, "name")) for t in tools) == names
    for tool in tools:
        if _get(tool, "type") == "mcp":
            mcp = rule.mcp
            if mcp is None or tool.get("require_approval") != mcp.require_approval:
                return False
            if tool.get("server_url") not in mcp.servers and (
                tool.get("connector_id") not in mcp.connectors
            ):
                return False
        elif _get(tool, "name") not in rule.names:
            return False
    return True


def _turn_detection_ok(value: Any, rules: RealtimeRules, enforced: dict[str, Any]) -> bool:
    rule = rules.turn_detection
    if rule is None:
        wanted = _get(enforced, "audio", "input", "turn_detection")
        return value == wanted or (wanted is None and _get(value, "type") in (None, "server_vad"))
    if value is None:
        return rule.allow_none
    if value.get("type") not in rule.types:
        return False
    if rule.eagerness is not None and value.get("eagerness") not in (None, *rule.eagerness):
        return False
    return all(_inside(value.get(key), getattr(rule, key))
               for key in ("threshold", "prefix_padding_ms", "silence_duration_ms"))  # fmt: skip


def _listed(value: Any, allowed: tuple[str, ...] | None) -> bool:
    return allowed is None or value is None or value in allowed


def violations(policy: Policy, enforced: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fields of ``current`` outside ``policy``, by their GA path."""
    rules = rules_of(policy)
    bad: list[str] = []
    if current.get("type", "realtime") != enforced.get("type", "realtime"):
        bad.append("type")
    if not _model_ok(current.get("model"), rules, enforced):
        bad.append("model")
    if current.get("type", "realtime") == "realtime":
        if not _instructions_ok(current.get("instructions"), rules, enforced):
            bad.append("instructions")
        if not _tools_ok(current.get("tools"), rules, enforced):
            bad.append("tools")
        modalities = current.get("output_modalities")
        if rules.modalities and modalities is not None:
            seed = {"text"} if modalities == ["text"] else {"audio", "text"}
            if seed not in [set(s) for s in rules.modalities]:
                bad.append("output_modalities")
        cap = rules.max_response_output_tokens
        tokens = current.get("max_output_tokens")
        if (
            cap is not None
            and tokens is not None
            and (
                type(tokens) is not int or tokens > cap.max  # "inf", or not a count at all
            )
        ):
            bad.append("max_output_tokens")
        voice = _get(current, "audio", "output", "voice")
        voice = voice.get("id") if isinstance(voice, dict) else voice
        if not _listed(voice, rules.voices):
            bad.append("audio.output.voice")
        out_format = SEED_FORMAT.get(str(_get(current, "audio", "output", "format", "type")))
        if not _listed(out_format, rules.output_audio_formats):
            bad.append("audio.output.format")
        if not _inside(_get(current, "audio", "output", "speed"), rules.speed):
            bad.append("audio.output.speed")
        effort = _get(current, "reasoning", "effort")
        if not _listed(effort, rules.reasoning_efforts):
            bad.append("reasoning")
        if not _listed(_get(current, "prompt", "id"), rules.prompts):
            bad.append("prompt")
    in_format = SEED_FORMAT.get(str(_get(current, "audio", "input", "format", "type")))
    if not _listed(in_format, rules.input_audio_formats):
        bad.append("audio.input.format")
    audio_in = _get(current, "audio", "input") or {}
    if "turn_detection" in audio_in and not _turn_detection_ok(
        audio_in["turn_detection"], rules, enforced
    ):
        bad.append("audio.input.turn_detection")
    transcription = _get(audio_in, "transcription", "model")
    if transcription is not None and (
        rules.transcription is None or transcription not in rules.transcription.models
    ):
        bad.append("audio.input.transcription")
    noise = _get(audio_in, "noise_reduction", "type")
    if noise is not None and (rules.noise_reduction is None or noise not in rules.noise_reduction):
        bad.append("audio.input.noise_reduction")
    tracing, rule = current.get("tracing"), rules.tracing
    if (rule.mode == "forbid" and tracing is not None) or (
        rule.mode == "force" and _get(tracing, "workflow_name") != rule.workflow_name
    ):  # forced: on, under the policy's workflow name ("auto" names none)
        bad.append("tracing")
    return bad


def revert(policy: Policy, enforced: dict[str, Any], bad: list[str]) -> dict[str, Any] | None:
    """The ``session.update`` event restoring the violating fields as enforced (or, for
    fields the call was created without, as the policy's first choice or off), or None when
    a violation cannot be reverted by an update (the call must end). Under ``audio`` only
    the fields that drifted are sent: a voice the client changed within the policy stays."""
    if any(path in UNREVERTABLE for path in bad):
        return None
    rules = rules_of(policy)
    session: dict[str, Any] = {"type": enforced.get("type", "realtime")}
    for path in dict.fromkeys(bad):
        root, *rest = path.split(".")
        if root == "audio":
            side, field = rest
            value = _get(enforced, root, side, field, default=_ABSENT)
            if value is _ABSENT:
                value = _audio_choice(rules, side, field)
            if value is _ABSENT:
                return None
            session.setdefault("audio", {}).setdefault(side, {})[field] = copy.deepcopy(value)
        elif root in enforced:
            session[root] = enforced[root]
        elif root in CLEARED:
            session[root] = CLEARED[root]
        elif root == "reasoning" and rules.reasoning_efforts:
            session["reasoning"] = {"effort": rules.reasoning_efforts[0]}
        else:
            return None
    return {"type": "session.update", "session": session}


def _audio_choice(rules: RealtimeRules, side: str, field: str) -> Any:
    """What restores an audio field the call was created without: off for transcription and
    noise reduction, the upstream's default turn detection (a rule whose first type is
    another put that one in the call), the policy's first format or voice, its speed."""
    if field in ("transcription", "noise_reduction"):
        return None
    if field == "turn_detection":
        return {"type": "server_vad"}
    if field == "format":
        formats = rules.input_audio_formats if side == "input" else rules.output_audio_formats
        return dict(GA_FORMATS[formats[0]]) if formats else _ABSENT
    if field == "voice" and rules.voices:
        return rules.voices[0]
    if field == "speed" and rules.speed is not None:
        return rules.speed.min if rules.speed.default is None else rules.speed.default
    return _ABSENT
