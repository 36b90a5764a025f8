"""``openai-beta``: the seed's ``POST /realtime/sessions``; the session goes as it is."""

from __future__ import annotations

from typing import Any

from tokenbroker.families.realtime.dialects.base import Dialect


def shape(
    session: dict[str, Any], ga_only: dict[str, Any]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The beta body is the enforced session; GA-only fields and MCP tools (GA only) have
    no place in it."""
    tools = session.get("tools") or []
    mcp = [f"tools[{i}]" for i, tool in enumerate(tools) if tool.get("type") == "mcp"]
    if mcp:
        session = {**session, "tools": [t for t in tools if t.get("type") != "mcp"]}
    ignored = [k for k in sorted(ga_only) if k not in ("type", "custom_voice")]
    return session, (*mcp, *ignored)


def _secret(reply: Any) -> Any:
    return reply.pop("client_secret")  # what is left is the session


def _session(reply: Any) -> Any:
    return reply


BETA = Dialect("openai-beta", "/realtime/sessions", "Authorization", shape, _secret, _session)
