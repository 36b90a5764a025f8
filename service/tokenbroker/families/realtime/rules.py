"""The Realtime API's rules in a policy, as plain frozen data: its section of a
:class:`~tokenbroker.policy.model.Policy` (``policy.sections["realtime"]``), read from the
policy's top-level keys (``models``, ``voices``, ``tools``, …)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tokenbroker.policy.model import Instructions, NumberRange, Policy, TokenCap


@dataclass(frozen=True, slots=True)
class McpServers:
    """MCP tools a client may send (GA): by server URL or connector id; approval forced."""

    servers: tuple[str, ...] = ()
    connectors: tuple[str, ...] = ()
    require_approval: str = "always"


@dataclass(frozen=True, slots=True)
class Tools:
    mode: str = "none"  # none | client | fixed
    names: tuple[str, ...] = ()
    list: tuple[dict[str, Any], ...] = ()
    mcp: McpServers | None = None  # mode client only


@dataclass(frozen=True, slots=True)
class Transcription:
    models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TurnDetection:
    types: tuple[str, ...]
    allow_none: bool = False
    eagerness: tuple[str, ...] | None = None
    threshold: NumberRange | None = None
    prefix_padding_ms: NumberRange | None = None
    silence_duration_ms: NumberRange | None = None


@dataclass(frozen=True, slots=True)
class Tracing:
    mode: str = "forbid"  # forbid | allow | force
    workflow_name: str | None = None


@dataclass(frozen=True, slots=True)
class RealtimeRules:
    models: tuple[str, ...] = ()
    voices: tuple[str, ...] | None = None
    modalities: tuple[tuple[str, ...], ...] | None = None
    input_audio_formats: tuple[str, ...] | None = None
    output_audio_formats: tuple[str, ...] | None = None
    temperature: NumberRange | None = None
    max_response_output_tokens: TokenCap | None = None
    instructions: Instructions | None = None
    tools: Tools = field(default_factory=Tools)
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    noise_reduction: tuple[str, ...] | None = None
    # GA session fields (the GA endpoint; a dialect without them names them as not sent)
    session_types: tuple[str, ...] = ("realtime",)
    speed: NumberRange | None = None
    tracing: Tracing = field(default_factory=Tracing)
    client_secret_ttl: TokenCap | None = None
    reasoning_efforts: tuple[str, ...] | None = None
    prompts: tuple[str, ...] | None = None
    include: tuple[str, ...] | None = None
    truncation: tuple[str, ...] | None = None


NO_RULES = RealtimeRules()


def rules_of(policy: Policy) -> RealtimeRules:
    """The policy's Realtime rules (none: a policy made without the family's section)."""
    rules: RealtimeRules = policy.sections.get("realtime", NO_RULES)
    return rules
