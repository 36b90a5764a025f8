"""The ``auth`` section: JWT providers, token checks and JWKS caching."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tokenbroker.config.base import Duration, Section, relative

Algorithm = Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "HS256"]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class JwksSettings(Section):
    cache_ttl: Duration = Field(
        "10m", validate_default=True, description="key set lifetime when the reply has no max-age"
    )
    min_ttl: Duration = Field("1m", validate_default=True, description="lower clamp of max-age")
    max_ttl: Duration = Field("1d", validate_default=True, description="upper clamp of max-age")
    refetch_cooldown: Duration = Field(
        "30s", validate_default=True, description="at most one refetch on unknown `kid` per this"
    )
    max_stale: Duration = Field(
        "1d", validate_default=True, description="last good key set serves this long while down"
    )
    max_bytes: int = Field(262144, ge=1, description="larger JWKS replies are refused")
    timeout: Duration = Field("5s", validate_default=True, description="one JWKS fetch")


class ProviderSettings(Section):
    """One JWT issuer and where its keys come from."""

    name: str = ""
    issuer: str = Field(min_length=1)
    audiences: tuple[str, ...] = Field((), strict=False)
    algorithms: tuple[Algorithm, ...] = Field(strict=False, min_length=1)
    hs256_secret_env: str | None = None
    pem_file: Path | None = Field(None, strict=False)
    jwks_url: str | None = None
    user_claim: str = "sub"
    required_claims: dict[str, tuple[Any, ...]] = Field(default_factory=dict, strict=False)
    hs256_secret: str | None = Field(None, repr=False, json_schema_extra={"env": "(named)"})

    _paths = field_validator("pem_file", mode="before")(relative)

    @field_validator("audiences", mode="before")
    @classmethod
    def _one_audience(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("required_claims", mode="before")
    @classmethod
    def _accepted_values(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("must map claim names to required values")
        return {k: tuple(v) if isinstance(v, list) else (v,) for k, v in value.items()}

    @field_validator("jwks_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK):
            raise ValueError("must be https:// (http only for loopback)")
        return value

    @model_validator(mode="after")
    def _key_source(self, info: ValidationInfo) -> ProviderSettings:
        """Exactly one key source, fitting the algorithms; the HS256 secret read from the
        environment given as context (``require_secrets``: it must be there)."""
        context = info.context or {}
        env, required = context.get("env") or {}, context.get("require_files", False)
        sources = [k for k in ("hs256_secret_env", "pem_file", "jwks_url") if getattr(self, k)]
        if self.hs256_secret and not sources:
            sources = ["hs256_secret"]  # built in code (dev mode)
        if len(sources) != 1:
            raise ValueError("set exactly one of hs256_secret_env, pem_file, jwks_url")
        problems: list[str] = []
        symmetric = [a for a in self.algorithms if a == "HS256"]
        update: dict[str, Any] = {"name": self.name or self.issuer}
        if sources[0] == "hs256_secret_env":
            if symmetric != list(self.algorithms):
                problems.append("@algorithms: an HS256 provider accepts only HS256")
            name = str(self.hs256_secret_env)
            secret = env.get(name)
            if required and not secret:
                problems.append(f"@hs256_secret_env: environment variable {name} is empty")
            elif required and len(secret or "") < 32:
                problems.append(f"@hs256_secret_env: {name} must hold 32 bytes or more")
            update["hs256_secret"] = secret
        elif symmetric and sources[0] != "hs256_secret":
            problems.append("@algorithms: HS256 needs hs256_secret_env, not a public key")
        if sources[0] == "pem_file" and required and not Path(str(self.pem_file)).is_file():
            problems.append(f"@pem_file: no such file: {self.pem_file}")
        if problems:
            raise ValueError("\n".join(problems))
        return self.model_copy(update=update)


class AuthSettings(Section):
    providers: tuple[ProviderSettings, ...] = Field(strict=False, min_length=1)
    leeway: Duration = Field(
        "30s", validate_default=True, description="clock skew allowed on `exp`, `nbf`, `iat`"
    )
    max_token_lifetime: Duration = Field(
        "1d", validate_default=True, description="tokens whose `exp - iat` is longer are refused"
    )
    max_token_bytes: int = Field(8192, ge=1, description="longer tokens are refused")
    verified_cache_bytes: int = Field(
        16 * 1024 * 1024,
        ge=0,
        description="memory for verified tokens per replica, kept until `exp` + leeway (`0`: off)",
    )
    jwks: JwksSettings = Field(default_factory=JwksSettings)
