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
from urllib.parse import urlsplit

import yaml

from .errors import InvalidDocument
from .jwks import JwksSettings
from .limits import parse_duration

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "HS256")
FAIL_MODES = ("closed", "open", "local")


class SettingsError(InvalidDocument):
    what = "configuration"


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    name: str
    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    hs256_secret: str | None = field(default=None, repr=False)
    pem_file: Path | None = None
    jwks_url: str | None = None
    user_claim: str = "sub"
    # claim name → accepted values (e.g. {"token_use": ("access",)})
    required_claims: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)


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
    upstream_retries: int = 2
    upstream_max_connections: int = 2000
    upstream_headers: Mapping[str, str] = field(default_factory=dict)  # OpenAI-Organization…
    shutdown_delay: float = 5.0  # keep serving (not ready) so load balancers stop sending
    shutdown_grace: float = 30.0  # then wait this long for in-flight mints
    audit_max_entries: int = 1_000_000
    audit_flush_interval: float = 0.1  # entries gather this long, then go in one batch
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "tb"
    redis_timeout: float = 1.0
    redis_max_connections: int = 1024
    redis_cluster: bool = False
    redis_ca_file: Path | None = None
    redis_cert_file: Path | None = None
    redis_key_file: Path | None = None
    fail_mode: str = "closed"
    policy_refresh_interval: float = 0.5
    leeway: float = 30.0
    max_token_lifetime: float = 86400.0
    max_token_bytes: int = 8192
    verified_cache_bytes: int = 16 * 1024 * 1024
    jwks: JwksSettings = field(default_factory=JwksSettings)
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 65536
    admin_token: str | None = field(default=None, repr=False)
    log_level: str = "info"
    log_format: str = "json"


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


def _relative(value: Any, base_dir: Path | None) -> Path | None:
    if not value:
        return None
    path = Path(str(value))
    return base_dir / path if base_dir is not None and not path.is_absolute() else path


def _key_source(
    raw: dict[str, Any],
    path: str,
    env: Mapping[str, str],
    r: _Reader,
    require_secrets: bool,
    base_dir: Path | None,
) -> dict[str, Any]:
    """Exactly one of hs256_secret_env, pem_file, jwks_url, checked against the algorithms."""
    algorithms = raw.get("algorithms") or []
    sources = [k for k in ("hs256_secret_env", "pem_file", "jwks_url") if raw.get(k)]
    if len(sources) != 1:
        r.errors.append(f"{path}: set exactly one of hs256_secret_env, pem_file, jwks_url")
        return {}
    symmetric = [a for a in algorithms if a == "HS256"]
    if sources[0] == "hs256_secret_env":
        if symmetric != list(algorithms):
            r.errors.append(f"{path}.algorithms: an HS256 provider accepts only HS256")
        name = str(raw["hs256_secret_env"])
        secret = env.get(name)
        if require_secrets and not secret:
            r.errors.append(f"{path}.hs256_secret_env: environment variable {name} is empty")
        elif require_secrets and len(secret or "") < 32:
            r.errors.append(f"{path}.hs256_secret_env: {name} must hold 32 bytes or more")
        return {"hs256_secret": secret}
    if symmetric:
        r.errors.append(f"{path}.algorithms: HS256 needs hs256_secret_env, not a public key")
    if sources[0] == "pem_file":
        pem = Path(str(raw["pem_file"]))
        if base_dir is not None and not pem.is_absolute():
            pem = base_dir / pem
        if require_secrets and not pem.is_file():
            r.errors.append(f"{path}.pem_file: no such file: {pem}")
        return {"pem_file": pem}
    url = str(raw["jwks_url"])
    parsed = urlsplit(url)
    loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
    if parsed.scheme != "https" and not (parsed.scheme == "http" and loopback):
        r.errors.append(f"{path}.jwks_url: must be https:// (http only for loopback)")
    return {"jwks_url": url}


def _provider(
    raw: Any,
    index: int,
    env: Mapping[str, str],
    r: _Reader,
    require_secrets: bool,
    base_dir: Path | None,
) -> ProviderSettings | None:
    path = f"auth.providers[{index}]"
    if not isinstance(raw, dict):
        r.errors.append(f"{path}: must be a mapping")
        return None
    known = (
        "name",
        "issuer",
        "audiences",
        "algorithms",
        "hs256_secret_env",
        "pem_file",
        "jwks_url",
        "user_claim",
        "required_claims",
    )
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
    required = raw.get("required_claims") or {}
    if not isinstance(required, dict):
        r.errors.append(f"{path}.required_claims: must map claim names to required values")
        required = {}
    return ProviderSettings(
        name=str(raw.get("name") or issuer),
        issuer=str(issuer),
        audiences=tuple(str(a) for a in audiences),
        algorithms=tuple(algorithms),
        user_claim=str(raw.get("user_claim", "sub")),
        required_claims={
            str(k): tuple(v) if isinstance(v, list) else (v,) for k, v in required.items()
        },
        **_key_source(raw, path, env, r, require_secrets, base_dir),
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
    known = (
        "server",
        "upstream",
        "redis",
        "fail_mode",
        "policies",
        "auth",
        "cors",
        "http",
        "log",
        "shutdown",
        "audit",
    )
    for unknown in set(raw) - set(known):
        r.errors.append(f"{unknown}: unknown setting")
    server = r.section(raw, "server", ("host", "port"))
    upstream = r.section(
        raw,
        "upstream",
        (
            "url",
            "connect_timeout",
            "timeout",
            "retries",
            "max_connections",
            "organization",
            "project",
        ),
    )
    shutdown = r.section(raw, "shutdown", ("delay", "grace"))
    audit = r.section(raw, "audit", ("max_entries", "flush_interval"))
    redis = r.section(
        raw,
        "redis",
        (
            "url",
            "prefix",
            "timeout",
            "max_connections",
            "cluster",
            "ca_file",
            "cert_file",
            "key_file",
        ),
    )
    policies = r.section(raw, "policies", ("file", "refresh_interval"))
    auth = r.section(
        raw, "auth", ("providers", "leeway", "max_token_lifetime", "verified_cache_bytes", "jwks")
    )
    jwks = r.section(
        auth,
        "jwks",
        (
            "cache_ttl",
            "min_ttl",
            "max_ttl",
            "refetch_cooldown",
            "max_stale",
            "max_bytes",
            "timeout",
        ),
    )
    cors = r.section(raw, "cors", ("allowed_origins",))
    http = r.section(raw, "http", ("max_body_bytes",))
    log = r.section(raw, "log", ("level", "format"))
    if log.get("format", "json") not in ("json", "text"):
        r.errors.append("log.format: must be json or text")
    upstream_headers = {
        header: str(upstream[key])
        for key, header in (("organization", "OpenAI-Organization"), ("project", "OpenAI-Project"))
        if upstream.get(key)
    }

    fail_mode = raw.get("fail_mode", "closed")
    if fail_mode not in FAIL_MODES:
        r.errors.append(f"fail_mode: must be one of {', '.join(FAIL_MODES)}")
    providers = [
        p
        for i, item in enumerate(auth.get("providers") or [])
        if (p := _provider(item, i, env, r, require_secrets, base_dir)) is not None
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
        upstream_retries=r.typed(upstream, "retries", "upstream.retries", int, 2),
        upstream_max_connections=r.typed(
            upstream, "max_connections", "upstream.max_connections", int, 2000
        ),
        upstream_headers=upstream_headers,
        shutdown_delay=r.duration(shutdown, "delay", "shutdown.delay", 5.0),
        shutdown_grace=r.duration(shutdown, "grace", "shutdown.grace", 30.0),
        audit_max_entries=r.typed(audit, "max_entries", "audit.max_entries", int, 1_000_000),
        audit_flush_interval=r.duration(audit, "flush_interval", "audit.flush_interval", 0.1),
        redis_url=env.get("REDIS_URL") or str(redis.get("url", "redis://127.0.0.1:6379/0")),
        redis_prefix=r.typed(redis, "prefix", "redis.prefix", str, "tb"),
        redis_timeout=r.duration(redis, "timeout", "redis.timeout", 1.0),
        redis_max_connections=r.typed(redis, "max_connections", "redis.max_connections", int, 1024),
        redis_cluster=r.typed(redis, "cluster", "redis.cluster", bool, False)
        or env.get("REDIS_CLUSTER", "").lower() in ("1", "true", "yes"),
        redis_ca_file=_relative(redis.get("ca_file"), base_dir),
        redis_cert_file=_relative(redis.get("cert_file"), base_dir),
        redis_key_file=_relative(redis.get("key_file"), base_dir),
        fail_mode=str(fail_mode),
        policy_refresh_interval=r.duration(
            policies, "refresh_interval", "policies.refresh_interval", 0.5
        ),
        leeway=r.duration(auth, "leeway", "auth.leeway", 30.0),
        max_token_lifetime=r.duration(
            auth, "max_token_lifetime", "auth.max_token_lifetime", 86400.0
        ),
        verified_cache_bytes=r.typed(
            auth, "verified_cache_bytes", "auth.verified_cache_bytes", int, 16 * 1024 * 1024
        ),
        jwks=JwksSettings(
            ttl=r.duration(jwks, "cache_ttl", "auth.jwks.cache_ttl", 600.0),
            min_ttl=r.duration(jwks, "min_ttl", "auth.jwks.min_ttl", 60.0),
            max_ttl=r.duration(jwks, "max_ttl", "auth.jwks.max_ttl", 86400.0),
            cooldown=r.duration(jwks, "refetch_cooldown", "auth.jwks.refetch_cooldown", 30.0),
            max_stale=r.duration(jwks, "max_stale", "auth.jwks.max_stale", 86400.0),
            max_bytes=r.typed(jwks, "max_bytes", "auth.jwks.max_bytes", int, 256 * 1024),
            timeout=r.duration(jwks, "timeout", "auth.jwks.timeout", 5.0),
        ),
        cors_origins=tuple(str(o) for o in origins),
        max_body_bytes=r.typed(http, "max_body_bytes", "http.max_body_bytes", int, 65536),
        admin_token=env.get("TOKENBROKER_ADMIN_TOKEN") or None,
        log_level=str(log.get("level", "info")).lower(),
        log_format=str(log.get("format", "json")),
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
