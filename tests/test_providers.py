"""Tokens shaped like real identity providers' are accepted with the provider configs of the
configuration page."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from jwks_server import JwksServer, SigningKey, new_key
from tokenbroker.auth.authenticator import Authenticator
from tokenbroker.config.load import settings_from_dict
from tokenbroker.errors import AuthenticationFailed

CONFIGURATION = Path(__file__).parent.parent / "docs" / "configuration.md"


def readme_providers() -> dict[str, dict[str, Any]]:
    """The provider blocks of the configuration page, by name."""
    blocks = re.findall(r"```yaml\n(# provider: .*?)```", CONFIGURATION.read_text(), re.DOTALL)
    providers = {}
    for block in blocks:
        [provider] = yaml.safe_load(block)
        providers[provider["name"]] = provider
    return providers


def shaped_claims(name: str, issuer: str) -> dict[str, Any]:
    """Claims as each provider issues them (trimmed to what matters), issued now."""
    NOW = int(time.time())
    common = {"iss": issuer, "iat": NOW, "exp": NOW + 3600}
    if name == "auth0":
        return {**common, "sub": "auth0|64f1c0ffee", "azp": "spa-client-id",
                "aud": ["https://api.example.com", "https://example.eu.auth0.com/userinfo"],
                "scope": "openid profile email", "exp": NOW + 86400}  # fmt: skip
    if name == "cognito":
        return {**common, "sub": str(uuid.uuid4()), "token_use": "access",
                "client_id": "4example0app0client0id", "username": "jane",
                "scope": "aws.cognito.signin.user.admin", "auth_time": NOW,
                "jti": str(uuid.uuid4())}  # fmt: skip
    if name == "keycloak":
        return {**common, "sub": str(uuid.uuid4()), "typ": "Bearer", "azp": "web-app",
                "aud": ["tokenbroker", "account"], "preferred_username": "jane",
                "exp": NOW + 300}  # fmt: skip
    if name == "firebase":
        uid = "kT3rFIREBASEuid0001"
        return {**common, "sub": uid, "user_id": uid, "aud": "my-project", "auth_time": NOW,
                "firebase": {"identities": {}, "sign_in_provider": "password"}}  # fmt: skip
    raise AssertionError(name)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return new_key("provider-key", "RS256")


@pytest.fixture(scope="module")
def jwks(key: SigningKey) -> Iterator[JwksServer]:
    server = JwksServer()
    server.reset(key)
    yield server
    server.stop()


@pytest.fixture
async def authenticator(jwks: JwksServer) -> AsyncIterator[Authenticator]:
    providers = [{**p, "jwks_url": jwks.url} if "jwks_url" in p else p
                 for p in readme_providers().values()]  # fmt: skip
    env = {"TOKENBROKER_JWT_SECRET": "s" * 40}
    settings = settings_from_dict({"auth": {"providers": providers}}, env)
    async with httpx.AsyncClient() as client:
        yield Authenticator(settings.auth, client)


@pytest.mark.parametrize("name", ["auth0", "cognito", "keycloak", "firebase"])
async def test_provider_shaped_tokens_are_accepted(
    authenticator: Authenticator, key: SigningKey, name: str
) -> None:
    """An access or ID token as the provider issues it verifies, with its sub as the user."""
    claims = shaped_claims(name, readme_providers()[name]["issuer"])
    identity = await authenticator.verify(key.sign(claims))
    assert identity.user_id == claims["sub"]
    assert identity.provider == name


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("cognito", {"token_use": "id"}),  # an ID token where an access token is required
        ("cognito", {"client_id": "another-app"}),
        ("auth0", {"aud": "https://another-api.example.com"}),
        ("firebase", {"aud": "another-project"}),
        ("keycloak", {"aud": "account"}),
    ],
)
async def test_near_misses_are_refused(
    authenticator: Authenticator, key: SigningKey, name: str, change: dict[str, Any]
) -> None:
    """The same shapes with the wrong audience, client or token use are refused."""
    claims = {**shaped_claims(name, readme_providers()[name]["issuer"]), **change}
    with pytest.raises(AuthenticationFailed):
        await authenticator.verify(key.sign(claims))
