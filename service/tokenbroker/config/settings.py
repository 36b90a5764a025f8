"""The one settings object: typed sections, each setting's default written once (here and in
:mod:`.auth`).

Each section is a frozen pydantic model that refuses unknown keys and wrong types; the
settings table of docs/configuration.md is generated from these models (``Field`` descriptions and
defaults), and a test holds the two equal. Values that come from the environment
(secrets, ``REDIS_URL``, proxies) are marked ``env`` and filled in by :mod:`.load`, the
only reader of the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tokenbroker.config.auth import AuthSettings, JwksSettings, ProviderSettings
from tokenbroker.config.base import Duration, Section, env_field, relative

__all__ = ["AuthSettings", "JwksSettings", "ProviderSettings", "Settings"]


class ServerSettings(Section):
    host: str = Field("127.0.0.1", description="listen address (`--host` overrides)")
    port: int = Field(8080, ge=0, le=65535, description="listen port (`--port` overrides)")
    max_connections: int = Field(
        2000, ge=1, description="open connections per process; more are closed at once"
    )


class UpstreamSettings(Section):
    dialect: Literal["openai", "openai-beta", "azure"] = Field(
        "openai",
        description="`openai`: GA `POST {url}/realtime/client_secrets`; `openai-beta`: the "
        "beta `POST {url}/realtime/sessions`; `azure`: GA on Azure, `url` is "
        "`https://{resource}.openai.azure.com/openai/v1`, key in `api-key`",
    )
    url: str = Field("https://api.openai.com/v1", description="the upstream API's base URL")
    azure_auth: Literal["key", "entra_id"] = Field(
        "key",
        description="`azure` only: the resource key (`AZURE_OPENAI_API_KEY`) or Microsoft "
        "Entra ID tokens from azure-identity (install the `azure` extra)",
    )
    connect_timeout: Duration = Field(
        "2s", validate_default=True, description="TCP/TLS connect timeout"
    )
    timeout: Duration = Field(
        "10s",
        validate_default=True,
        description="total deadline of one upstream call (504 after it)",
    )
    retries: int = Field(
        2,
        ge=0,
        le=10,
        description="retries on connection errors and 500/502/503/504, within the deadline",
    )
    max_connections: int = Field(
        2000, ge=1, description="mint calls in flight to the upstream at once (more wait)"
    )
    models_check_interval: Duration = Field(
        "1d",
        validate_default=True,
        description="how often the upstream's model list is read for the shutdown dates of "
        "the models the policies name (also at start)",
    )
    organization: str | None = Field(None, description="sent as `OpenAI-Organization`")
    project: str | None = Field(None, description="sent as `OpenAI-Project`")
    api_key: str | None = env_field(
        "OPENAI_API_KEY", "the organisation's key (`AZURE_OPENAI_API_KEY` for `azure`)"
    )
    proxy: str | None = env_field(
        "HTTPS_PROXY", "proxy for the upstream call, by the scheme of `url` (`NO_PROXY` too)"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _azure_needs_its_resource(self) -> UpstreamSettings:
        if self.azure_auth == "entra_id" and self.dialect != "azure":
            raise ValueError("@azure_auth: entra_id is for dialect azure")
        if self.dialect == "azure" and urlsplit(self.url).hostname == "api.openai.com":
            raise ValueError(
                "@url: with dialect azure, set https://{resource}.openai.azure.com/openai/v1"
            )
        return self

    @property
    def headers(self) -> dict[str, str]:
        """The extra headers of every upstream call."""
        named = (("OpenAI-Organization", self.organization), ("OpenAI-Project", self.project))
        return {header: value for header, value in named if value}


class RedisSettings(Section):
    url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="the shared store (`rediss://` for TLS); `$REDIS_URL` overrides",
    )
    prefix: str = Field("tb", min_length=1, description="every key starts with it")
    timeout: Duration = Field(
        "1s", validate_default=True, description="connect, socket and pool-wait timeout of one call"
    )
    max_connections: int = Field(
        1024, ge=1, description="connection pool bound per replica (single node)"
    )
    cluster: bool = Field(
        False, description="Redis Cluster mode (`$REDIS_CLUSTER=true` also sets it)"
    )
    ca_file: Path | None = Field(None, strict=False, description="TLS: CA to verify the server")
    cert_file: Path | None = Field(None, strict=False, description="TLS: client certificate (mTLS)")
    key_file: Path | None = Field(None, strict=False, description="TLS: client key (mTLS)")

    _paths = field_validator("ca_file", "cert_file", "key_file", mode="before")(relative)


class PoliciesSettings(Section):
    file: Path | None = Field(
        None,
        strict=False,
        description="policy YAML (must exist), applied as version 1 when the store is empty",
    )
    refresh_interval: Duration = Field(
        "500ms", validate_default=True, description="how often a replica checks for a new version"
    )

    _paths = field_validator("file", mode="before")(relative)

    @field_validator("file")
    @classmethod
    def _exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and (info.context or {}).get("require_files") and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value


class CorsSettings(Section):
    allowed_origins: tuple[str, ...] = Field(
        (), strict=False, description="exact origins allowed to call from a browser (no `*`)"
    )

    allow_loopback: bool = Field(
        False,
        description="also any `http(s)://localhost`, `127.0.0.1` or `[::1]` origin, any port "
        "(`tokenbroker dev` sets it)",
    )

    @field_validator("allowed_origins")
    @classmethod
    def _exact(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "*" in value:
            raise ValueError("must be a list of exact origins (no '*')")
        return value


class HttpSettings(Section):
    max_body_bytes: int = Field(65536, ge=1, description="larger bodies get 413")
    max_header_bytes: int = Field(
        16384, ge=1024, description="larger request lines + headers get 431"
    )
    header_timeout: Duration = Field(
        "10s", validate_default=True, description="headers not complete by then: 408, closed"
    )
    body_timeout: Duration = Field(
        "10s", validate_default=True, description="body not complete by then: 408"
    )


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    format: Literal["json", "text"] = Field("json", description="one JSON object per line, or text")


class AuditSettings(Section):
    max_entries: int = Field(1_000_000, ge=1, description="approximate cap of the audit stream")
    flush_interval: Duration = Field(
        "100ms", validate_default=True, description="entries gather this long, then go in one batch"
    )


class ShutdownSettings(Section):
    delay: Duration = Field(
        "5s",
        validate_default=True,
        description="after SIGTERM: not ready, still serving, for this long",
    )
    grace: Duration = Field(
        "30s", validate_default=True, description="then: time in-flight requests get to finish"
    )


class Price(Section):
    """US dollars per million tokens, by modality (the upstream's price list)."""

    text_input: float = Field(0.0, ge=0, strict=False)
    text_cached_input: float = Field(0.0, ge=0, strict=False)
    text_output: float = Field(0.0, ge=0, strict=False)
    audio_input: float = Field(0.0, ge=0, strict=False)
    audio_cached_input: float = Field(0.0, ge=0, strict=False)
    audio_output: float = Field(0.0, ge=0, strict=False)


class CallsSettings(Section):
    lease: Duration = Field(
        "5s",
        validate_default=True,
        description="a live call whose watching replica stops renewing for this long is "
        "adopted by another",
    )
    renew_interval: Duration = Field(
        "1s",
        validate_default=True,
        description="how often a replica renews its calls' leases and looks for calls to adopt",
    )
    max_per_replica: int = Field(
        10000, ge=1, description="live calls one replica watches at most (more: 503)"
    )
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="per model: `{text_input, text_cached_input, text_output, audio_input, "
        "audio_cached_input, audio_output}` in USD per million tokens (cost budgets)",
    )

    @model_validator(mode="after")
    def _renew_within_lease(self) -> CallsSettings:
        if self.renew_interval * 2 > self.lease:
            raise ValueError("@renew_interval: must be at most half of lease")
        return self


class LivePrice(Section):
    """US dollars per minute of a GPT-Live model's session, billed by the second."""

    active_per_minute: float = Field(0.0, ge=0, strict=False)
    standby_per_minute: float = Field(0.0, ge=0, strict=False)


class LiveSettings(Section):
    prices: dict[str, LivePrice] = Field(
        default_factory=dict,
        description="GPT-Live: per model `{active_per_minute, standby_per_minute}` in USD "
        "(cost budgets; the backend's tokens are priced by `calls.prices`)",
    )
    safety_secret: str | None = env_field(
        "TOKENBROKER_SAFETY_SECRET",
        "GPT-Live: the key of each user's `safety_identifier` "
        "pseudonym (HMAC of the user id); unset: derived from the upstream key",
    )
    mcp_secrets: dict[str, str] = Field(
        default_factory=dict,
        repr=False,
        json_schema_extra={"env": "TOKENBROKER_MCP_*"},
        description="GPT-Live: the secrets a policy's MCP tools name (`authorization_env`, "
        "`headers_env`), every `TOKENBROKER_MCP_*` variable",
    )


class Settings(Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    fail_mode: Literal["closed", "open", "local"] = Field(
        "closed",
        description="Redis unreachable: `closed` → 503 `store_unavailable`; `open` → mint "
        "without limits; `local` → per-process limits",
    )
    policies: PoliciesSettings = Field(default_factory=PoliciesSettings)
    auth: AuthSettings
    cors: CorsSettings = Field(default_factory=CorsSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    calls: CallsSettings = Field(default_factory=CallsSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    admin_token: str | None = env_field(
        "TOKENBROKER_ADMIN_TOKEN", "enables the admin API under `/admin/` with this credential"
    )
