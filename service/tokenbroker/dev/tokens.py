"""Development JWTs: a persisted dev signing key and a helper that signs tokens with it."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt

DEV_ISSUER = "tokenbroker-dev"
DEV_AUDIENCE = "tokenbroker"


def dev_key_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", ".")) / ".local" / "state")
    return Path(base) / "tokenbroker" / "dev-signing-key"


def dev_signing_key(env: Mapping[str, str]) -> str:
    """The dev HS256 key, generated on first use and kept (0600) so `token` can reuse it."""
    path = dev_key_path(env)
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def sign_token(
    secret: str,
    *,
    issuer: str,
    audience: str | None,
    sub: str,
    claims: Mapping[str, Any] | None = None,
    ttl: int = 3600,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"iss": issuer, "sub": sub, "iat": now, "exp": now + ttl}
    if audience:
        payload["aud"] = audience
    payload.update(claims or {})
    return jwt.encode(payload, secret, algorithm="HS256")
