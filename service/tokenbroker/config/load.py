"""Building :class:`Settings` from a YAML document and the environment, or refusing it.

The only reader of the environment: secrets (``OPENAI_API_KEY``, each provider's HS256
secret, ``TOKENBROKER_ADMIN_TOKEN``), ``REDIS_URL``/``REDIS_CLUSTER``, the proxy variables
and ``TOKENBROKER_CONFIG``. Every problem is reported as ``path: reason`` before anything
starts.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ValidationError

from tokenbroker.config.settings import Settings
from tokenbroker.errors import InvalidDocument

DEFAULT_CONFIG = "config/broker.yaml"


class SettingsError(InvalidDocument):
    what = "configuration"


def _path(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _reason(error: Any) -> str:
    """pydantic's error in the words of the rest of the broker's documents."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown setting"
    if kind == "missing":
        return "is required"
    if kind in ("less_than_equal", "greater_than_equal"):
        bound = ctx.get("le", ctx.get("ge"))
        return f"must be at {'most' if kind == 'less_than_equal' else 'least'} {bound}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected'].replace(chr(39), '').replace(' or ', ', ')}"
    if kind.endswith("_type") and kind != "model_type":
        return f"must be {kind.removesuffix('_type').removesuffix('_parsing')}"
    if kind == "model_type" or kind == "dict_type":
        return "must be a mapping"
    if kind == "too_short" and error["loc"] == ("auth", "providers"):
        return "configure at least one JWT provider"
    if kind == "too_short":
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return str(error["msg"])


def _env_only(model: type[BaseModel], raw: Any, prefix: str, errors: list[str]) -> None:
    """Settings that only the environment gives are refused in the file."""
    if not isinstance(raw, dict):
        return
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if name in raw and "env" in extra:
            errors.append(f"{prefix}{name}: comes only from the environment ({extra['env']})")
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel) and name in raw:
            _env_only(sub, raw[name], f"{prefix}{name}.", errors)


def _proxy(url: Any, env: Mapping[str, str]) -> str | None:
    """The proxy that ``HTTPS_PROXY`` / ``HTTP_PROXY`` (and ``NO_PROXY``) name for ``url``."""
    proxies = {k.lower().removesuffix("_proxy"): v for k, v in env.items()
               if k.lower().endswith("_proxy") and v}  # fmt: skip
    parts = urlsplit(str(url))
    # the standard library's NO_PROXY matching, given this mapping instead of os.environ
    if urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):  # type: ignore[attr-defined]
        return None
    return proxies.get(parts.scheme)


def _from_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The document with the environment's values put in their sections."""
    doc = {**raw}
    upstream = doc.get("upstream", {})
    if isinstance(upstream, dict):  # otherwise validation names it
        upstream = {**upstream}
        key = "AZURE_OPENAI_API_KEY" if upstream.get("dialect") == "azure" else "OPENAI_API_KEY"
        upstream["api_key"] = env.get(key) or None
        upstream["proxy"] = _proxy(upstream.get("url", "https://api.openai.com/v1"), env)
        doc["upstream"] = upstream
    redis = doc.get("redis")
    if isinstance(redis, dict) or redis is None:
        redis = {**(redis or {})}
        if env.get("REDIS_URL"):
            redis["url"] = env["REDIS_URL"]
        if env.get("REDIS_CLUSTER", "").lower() in ("1", "true", "yes"):
            redis["cluster"] = True
        doc["redis"] = redis
    doc["admin_token"] = env.get("TOKENBROKER_ADMIN_TOKEN") or None
    live = doc.get("live")
    if isinstance(live, dict) or live is None:
        doc["live"] = {
            **(live or {}),
            "safety_secret": env.get("TOKENBROKER_SAFETY_SECRET") or None,
            "mcp_secrets": {k: v for k, v in env.items() if k.startswith("TOKENBROKER_MCP_")},
        }
    return doc


def settings_from_dict(
    raw: Mapping[str, Any],
    env: Mapping[str, str],
    base_dir: Path | None = None,
    *,
    require_secrets: bool = True,
) -> Settings:
    """Settings from a parsed config document and an environment mapping.

    ``require_secrets=False`` is for operator commands, which need the store but not the
    JWT secrets (nor the policy file).
    """
    errors: list[str] = []
    if not isinstance(raw, dict):
        raise SettingsError(["(document): must be a YAML mapping"])
    _env_only(Settings, raw, "", errors)
    if "auth" not in raw:
        errors.append("auth.providers: configure at least one JWT provider")
    if errors:
        raise SettingsError(sorted(errors))
    context = {"base_dir": base_dir, "require_files": require_secrets, "env": env}
    try:
        return Settings.model_validate(_from_env(dict(raw), env), context=context)
    except ValidationError as exc:
        found = exc.errors()
        # pydantic also counts a list whose items failed as too short: name the items only
        failed = {e["loc"][:-1] for e in found if e["type"] != "too_short" and e["loc"]}
        kept = [e for e in found if not (e["type"] == "too_short" and e["loc"] in failed)]
        raise SettingsError(sorted({line for e in kept for line in _lines(e)})) from None


def _lines(error: Any) -> list[str]:
    """``path: reason`` for one pydantic error; a model check may name several fields of
    its model, one per line, as ``@field: reason``."""
    path, reason = _path(error["loc"]), _reason(error)
    if not reason.startswith("@"):
        return [f"{path}: {reason}"]
    return [f"{path}.{line[1:]}" for line in reason.splitlines()]


def environment() -> Mapping[str, str]:
    """The process environment: handed to the loader, read nowhere else."""
    return os.environ


def config_path(given: str | None, env: Mapping[str, str]) -> Path:
    """``--config``, else ``$TOKENBROKER_CONFIG``, else ``config/broker.yaml``."""
    return Path(given or env.get("TOKENBROKER_CONFIG") or DEFAULT_CONFIG)


def load_settings(
    path: str | Path, env: Mapping[str, str], *, require_secrets: bool = True
) -> Settings:
    """Read the YAML config at ``path``; relative file paths in it are relative to it."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError([f"{path}: {exc}"]) from exc
    if not isinstance(raw, dict):
        raise SettingsError([f"{path}: must be a YAML mapping"])
    return settings_from_dict(raw, env, base_dir=path.parent, require_secrets=require_secrets)
