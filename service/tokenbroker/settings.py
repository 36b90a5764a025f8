"""The one settings object: built once at start-up from a YAML file and the environment.

Secrets come only from the environment (``OPENAI_API_KEY``, the HS256 secret named by
each provider's ``hs256_secret_env``, ``TOKENBROKER_ADMIN_TOKEN``); ``REDIS_URL``
overrides ``redis.url``. Nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .limits import parse_duration

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "HS256")
FAIL_MODES = ("closed", "open", "local")


class SettingsError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  {e}" for e in errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    hs256_secret: str | None = field(default=None, repr=False)
    user_claim: str = "sub"


@dataclass(frozen=True, slots=True)
class Settings:
    providers: tuple[ProviderSettings, ...]
    policies_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    upstream_url: str = "https://api.openai.com/v1"
    upstream_api_key: str | None = field(default=None, repr=False)
    upstream_connect_timeout: float = 2.0
    upstream_timeout: float = 10.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "tb"
    redis_timeout: float = 0.25
    fail_mode: str = "closed"
    policy_refresh_interval: float = 0.5
    leeway: float = 30.0
    max_token_lifetime: float = 86400.0
    max_token_bytes: int = 8192
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 65536
    admin_token: str | None = field(default=None, repr=False)
    log_level: str = "info"


class _Reader:
    """Typed reads from nested YAML with errors collected by path."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def section(self, raw: Mapping[str, Any], key: str, known: tuple[str, ...]) -> dict[str, Any]:
        value = raw.get(key) or {}
        if not isinstance(value, dict):
            self.errors.append(f"{key}: must be a mapping")
            return {}
        for unknown in set(value) - set(known):
            self.errors.append(f"{key}.{unknown}: unknown setting")
        return value

    def duration(self, raw: Mapping[str, Any], key: str, path: str, default: float) -> float:
        value = raw.get(key)
        if value is None:
            return default
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.errors.append(f"{path}: {exc}")
            return default

    def typed(self, raw: Mapping[str, Any], key: str, path: str, kind: type, default: Any) -> Any:
        value = raw.get(key, default)
        if value is not None and (
            not isinstance(value, kind) or isinstance(value, bool) != (kind is bool)
        ):
            self.errors.append(f"{path}: must be {kind.__name__}")
            return default
        return value


def _provider(
    raw: Any, index: int, env: Mapping[str, str], r: _Reader, require_secrets: bool
) -> ProviderSettings | None:
    path = f"auth.providers[{index}]"
    if not isinstance(raw, dict):
        r.errors.append(f"{path}: must be a mapping")
        return None
    known = ("name", "issuer", "audiences", "algorithms", "hs256_secret_env", "user_claim")
    for unknown in set(raw) - set(known):
        r.errors.append(f"{path}.{unknown}: unknown setting")
    issuer = raw.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        r.errors.append(f"{path}.issuer: is required")
    audiences = raw.get("audiences", [])
    if isinstance(audiences, str):
        audiences = [audiences]
    algorithms = raw.get("algorithms") or []
    for alg in algorithms:
        if alg not in ALGORITHMS:
            r.errors.append(f"{path}.algorithms: {alg!r} is not one of {', '.join(ALGORITHMS)}")
    if not algorithms:
        r.errors.append(f"{path}.algorithms: list the accepted algorithms explicitly")
    secret = None
    secret_env = raw.get("hs256_secret_env")
    if secret_env:
        secret = env.get(str(secret_env))
        if not require_secrets:
            pass
        elif not secret:
            r.errors.append(f"{path}.hs256_secret_env: environment variable {secret_env} is empty")
        elif len(secret) < 32:
            r.errors.append(f"{path}.hs256_secret_env: {secret_env} must hold 32 bytes or more")
    elif "HS256" in algorithms and require_secrets:
        r.errors.append(f"{path}.hs256_secret_env: is required for HS256")
    return ProviderSettings(
        name=str(raw.get("name") or issuer),
        issuer=str(issuer),
        audiences=tuple(str(a) for a in audiences),
        algorithms=tuple(algorithms),
        hs256_secret=secret,
        user_claim=str(raw.get("user_claim", "sub")),
    )


def settings_from_dict(
    raw: Mapping[str, Any],
    env: Mapping[str, str],
    base_dir: Path | None = None,
    *,
    require_secrets: bool = True,
) -> Settings:
    """Build Settings from a parsed config document and an environment mapping.

    ``require_secrets=False`` is for operator commands, which need the store but not the
    JWT secrets.
    """
    r = _Reader()
    known = ("server", "upstream", "redis", "fail_mode", "policies", "auth", "cors", "http", "log")
    for unknown in set(raw) - set(known):
        r.errors.append(f"{unknown}: unknown setting")
    server = r.section(raw, "server", ("host", "port"))
    upstream = r.section(raw, "upstream", ("url", "connect_timeout", "timeout"))
    redis = r.section(raw, "redis", ("url", "prefix", "timeout"))
    policies = r.section(raw, "policies", ("file", "refresh_interval"))
    auth = r.section(raw, "auth", ("providers", "leeway", "max_token_lifetime"))
    cors = r.section(raw, "cors", ("allowed_origins",))
    http = r.section(raw, "http", ("max_body_bytes",))
    log = r.section(raw, "log", ("level",))

    fail_mode = raw.get("fail_mode", "closed")
    if fail_mode not in FAIL_MODES:
        r.errors.append(f"fail_mode: must be one of {', '.join(FAIL_MODES)}")
    providers = [
        p
        for i, item in enumerate(auth.get("providers") or [])
        if (p := _provider(item, i, env, r, require_secrets)) is not None
    ]
    if not providers:
        r.errors.append("auth.providers: configure at least one JWT provider")
    policies_file = policies.get("file")
    policy_path = None
    if policies_file:
        policy_path = Path(str(policies_file))
        if base_dir is not None and not policy_path.is_absolute():
            policy_path = base_dir / policy_path
        if require_secrets and not policy_path.is_file():
            r.errors.append(f"policies.file: no such file: {policy_path}")
    origins = cors.get("allowed_origins") or []
    if not isinstance(origins, list) or "*" in origins:
        r.errors.append("cors.allowed_origins: must be a list of exact origins (no '*')")
        origins = []

    settings = Settings(
        providers=tuple(providers),
        policies_file=policy_path,
        host=r.typed(server, "host", "server.host", str, "127.0.0.1"),
        port=r.typed(server, "port", "server.port", int, 8080),
        upstream_url=str(upstream.get("url", "https://api.openai.com/v1")).rstrip("/"),
        upstream_api_key=env.get("OPENAI_API_KEY") or None,
        upstream_connect_timeout=r.duration(
            upstream, "connect_timeout", "upstream.connect_timeout", 2.0
        ),
        upstream_timeout=r.duration(upstream, "timeout", "upstream.timeout", 10.0),
        redis_url=env.get("REDIS_URL") or str(redis.get("url", "redis://127.0.0.1:6379/0")),
        redis_prefix=r.typed(redis, "prefix", "redis.prefix", str, "tb"),
        redis_timeout=r.duration(redis, "timeout", "redis.timeout", 0.25),
        fail_mode=str(fail_mode),
        policy_refresh_interval=r.duration(
            policies, "refresh_interval", "policies.refresh_interval", 0.5
        ),
        leeway=r.duration(auth, "leeway", "auth.leeway", 30.0),
        max_token_lifetime=r.duration(
            auth, "max_token_lifetime", "auth.max_token_lifetime", 86400.0
        ),
        cors_origins=tuple(str(o) for o in origins),
        max_body_bytes=r.typed(http, "max_body_bytes", "http.max_body_bytes", int, 65536),
        admin_token=env.get("TOKENBROKER_ADMIN_TOKEN") or None,
        log_level=str(log.get("level", "info")).lower(),
    )
    if r.errors:
        raise SettingsError(sorted(r.errors))
    return settings


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
