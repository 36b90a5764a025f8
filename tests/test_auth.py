"""Authentication through a real broker: every key source, and a table of hostile tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from conftest import AUDIENCE, ISSUER, JWT_SECRET, FakeUpstream, StartBroker, make_token
from jwks_server import JwksServer, SigningKey, new_key
from servers import TokenbrokerServer

PEM_ISSUER = "https://pem.test"
JWKS_ISSUER = "https://jwks.test"


def now() -> int:
    """The wall clock, read when a token is made (never at import)."""
    return int(time.time())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any] | str, payload: dict[str, Any] | str,
          key: Any = JWT_SECRET, alg: str | None = None) -> str:  # fmt: skip
    """A compact JWS built by hand (raw JSON strings allow duplicate keys)."""
    raw_header = header if isinstance(header, str) else json.dumps(header)
    raw_payload = payload if isinstance(payload, str) else json.dumps(payload)
    signing_input = f"{b64(raw_header.encode())}.{b64(raw_payload.encode())}".encode()
    algorithm = alg or (json.loads(raw_header).get("alg") if raw_header.startswith("{") else None)
    if algorithm in (None, "none", "None"):
        return signing_input.decode() + "."
    if algorithm == "HS256":  # by hand: PyJWT refuses to sign with a PEM as the secret
        secret = key.encode() if isinstance(key, str) else key
        signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
        return f"{signing_input.decode()}.{b64(signature)}"
    implementation = jwt.algorithms.get_default_algorithms()[algorithm]
    signature = implementation.sign(signing_input, implementation.prepare_key(key))
    return f"{signing_input.decode()}.{b64(signature)}"


def claims(**overrides: Any) -> dict[str, Any]:
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "iat": now(), "exp": now() + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


HS = {"alg": "HS256", "typ": "JWT"}


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    return {
        "pem": new_key("pem", "RS256"),
        "rsa": new_key("rsa-1", "RS256"),
        "ec": new_key("ec-1", "ES256"),
        "ed": new_key("ed-1", "EdDSA"),
        "attacker": new_key("rsa-1", "RS256"),  # same kid as a real key
    }


@pytest.fixture(scope="module")
def jwks(keys: dict[str, SigningKey]) -> Iterator[JwksServer]:
    server = JwksServer()
    server.reset(keys["rsa"], keys["ec"], keys["ed"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def attacker() -> Iterator[JwksServer]:
    """A JWKS server that a hostile token points to; it must never be asked."""
    server = JwksServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def broker(
    start_broker: StartBroker,
    keys: dict[str, SigningKey],
    jwks: JwksServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> TokenbrokerServer:
    pem = tmp_path_factory.mktemp("keys") / "public.pem"
    pem.write_bytes(keys["pem"].private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
    providers = [
        {"name": "app", "issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": ["HS256"],
         "hs256_secret_env": "TEST_JWT_SECRET"},
        {"name": "pem", "issuer": PEM_ISSUER, "audiences": [AUDIENCE],
         "algorithms": ["RS256", "PS256"], "pem_file": str(pem)},
        {"name": "jwks", "issuer": JWKS_ISSUER, "audiences": [AUDIENCE],
         "algorithms": ["RS256", "ES256", "EdDSA"], "jwks_url": jwks.url},
    ]  # fmt: skip
    return start_broker(auth={"providers": providers, "max_token_lifetime": "1d"})


def mint(broker: TokenbrokerServer, token: str) -> httpx.Response:
    return httpx.post(broker.url + "/v1/realtime/sessions", json={},
                      headers={"Authorization": f"Bearer {token}"})  # fmt: skip


class TestAccepted:
    @pytest.mark.parametrize(
        ("key", "issuer", "alg"),
        [("pem", PEM_ISSUER, "RS256"), ("pem", PEM_ISSUER, "PS256"), ("rsa", JWKS_ISSUER, "RS256"),
         ("ec", JWKS_ISSUER, "ES256"), ("ed", JWKS_ISSUER, "EdDSA")],
    )  # fmt: skip
    def test_every_key_source_and_algorithm(
        self,
        broker: TokenbrokerServer,
        upstream: FakeUpstream,
        keys: dict[str, SigningKey],
        key: str,
        issuer: str,
        alg: str,
    ) -> None:
        """PEM and JWKS providers accept tokens signed with their keys."""
        signer = SigningKey(keys[key].kid, alg, keys[key].private)
        token = signer.sign(claims(iss=issuer, sub=f"user-{key}-{alg}"))
        assert mint(broker, token).status_code == 200

    def test_hs256(self, broker: TokenbrokerServer, upstream: FakeUpstream) -> None:
        """The shared-secret provider still works beside the others."""
        assert mint(broker, make_token("hs-user")).status_code == 200


def hostile_cases(keys: dict[str, SigningKey], attacker_url: str) -> list[tuple[str, str, str]]:
    """(name, token, expected code) for tokens that must never be accepted."""
    rsa, ec = keys["rsa"], keys["ec"]
    pem_public = keys["pem"].private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)  # fmt: skip
    attacker_jwk = keys["attacker"].jwk
    NOW = now()  # one instant for the whole table
    good = forge(HS, claims())
    head, body, sig = good.split(".")
    big = forge(HS, claims(padding="x" * 9000))
    return [
        ("alg none", forge({"alg": "none"}, claims()), "invalid_token"),
        ("alg None", forge({"alg": "None"}, claims()), "invalid_token"),
        ("alg none with a signature", forge({"alg": "none"}, claims()) + sig, "invalid_token"),
        ("HS256 with the PEM public key (confusion)",
         forge(HS, claims(iss=PEM_ISSUER), key=pem_public.decode(), alg="HS256"), "invalid_token"),
        ("HS256 for an RS provider", forge(HS, claims(iss=JWKS_ISSUER)), "invalid_token"),
        ("right kid, attacker's key",
         keys["attacker"].sign(claims(iss=JWKS_ISSUER)), "invalid_token"),
        ("ES256 signature under an RS256 header",
         forge({"alg": "RS256", "kid": "ec-1"}, claims(iss=JWKS_ISSUER), key=ec.private,
               alg="ES256"), "invalid_token"),
        ("RS256 header on the EC key's kid",
         forge({"alg": "RS256", "kid": "ec-1"}, claims(iss=JWKS_ISSUER), key=rsa.private,
               alg="RS256"), "invalid_token"),
        ("embedded jwk", keys["attacker"].sign(claims(iss=JWKS_ISSUER), jwk=attacker_jwk),
         "invalid_token"),
        ("jku to attacker", keys["attacker"].sign(claims(iss=JWKS_ISSUER), jku=attacker_url),
         "invalid_token"),
        ("x5u to attacker", keys["attacker"].sign(claims(iss=JWKS_ISSUER), x5u=attacker_url),
         "invalid_token"),
        ("unknown crit", forge({**HS, "crit": ["exp"]}, claims()), "invalid_token"),
        ("unknown issuer", forge(HS, claims(iss="https://evil.test")), "invalid_token"),
        ("no issuer", forge(HS, claims(iss=None)), "invalid_token"),
        ("no exp", forge(HS, claims(exp=None)), "invalid_token"),
        ("expired", forge(HS, claims(iat=NOW - 7200, exp=NOW - 3600)), "token_expired"),
        ("not yet valid", forge(HS, claims(nbf=NOW + 3600, exp=NOW + 7200)), "invalid_token"),
        ("issued in the future", forge(HS, claims(iat=NOW + 3600, exp=NOW + 7200)),
         "invalid_token"),
        ("exp as a string", forge(HS, claims(exp=str(NOW + 600))), "invalid_token"),
        ("iat as a string", forge(HS, claims(iat=str(NOW))), "invalid_token"),
        ("exp as a boolean", forge(HS, claims(exp=True)), "invalid_token"),
        ("absurd exp", forge(HS, claims(exp=253402300799)), "invalid_token"),
        ("lifetime over the maximum", forge(HS, claims(exp=NOW + 3 * 86400)), "invalid_token"),
        ("wrong audience", forge(HS, claims(aud="someone-else")), "invalid_token"),
        ("no audience", forge(HS, claims(aud=None)), "invalid_token"),
        ("audience of the wrong type", forge(HS, claims(aud=42)), "invalid_token"),
        ("audience list with a non-string", forge(HS, claims(aud=[AUDIENCE, 5])),
         "invalid_token"),
        ("audience list without ours", forge(HS, claims(aud=["a", "b"])), "invalid_token"),
        ("jti not a string", forge(HS, claims(jti=7)), "invalid_token"),
        ("expired and wrongly signed",
         forge(HS, claims(iat=NOW - 7200, exp=NOW - 3600), key="another-secret-of-length-0123"),
         "invalid_token"),
        ("truncated signature", f"{head}.{body}.{sig[:-6]}", "invalid_token"),
        ("empty user id", forge(HS, claims(sub="")), "invalid_token"),
        ("blank user id", forge(HS, claims(sub="   ")), "invalid_token"),
        ("user id not a string", forge(HS, claims(sub=42)), "invalid_token"),
        ("user id with control characters", forge(HS, claims(sub="a\nb")), "invalid_token"),
        ("no user id", forge(HS, claims(sub=None)), "invalid_token"),
        ("duplicate key in payload",
         forge(HS, json.dumps(claims())[:-1] + ', "sub": "admin"}'), "invalid_token"),
        ("duplicate key in header", forge('{"alg": "HS256", "alg": "HS256"}', claims(),
                                          alg="HS256"), "invalid_token"),
        ("oversized", big, "invalid_token"),
        ("bad base64", f"{head}.{body}!.{sig}", "invalid_token"),
        ("two segments", f"{head}.{body}", "invalid_token"),
        ("payload is an array", forge(HS, "[1, 2]", alg="HS256"), "invalid_token"),
        ("signature stripped", f"{head}.{body}.", "invalid_token"),
        ("tampered payload", f"{head}.{b64(json.dumps(claims(sub='admin')).encode())}.{sig}",
         "invalid_token"),
        ("wrong secret", forge(HS, claims(), key="a-different-secret-of-enough-length-123"),
         "invalid_token"),
        ("unknown kid", SigningKey("nope", "RS256", rsa.private).sign(claims(iss=JWKS_ISSUER)),
         "invalid_token"),
        ("kid not a string", forge({"alg": "RS256", "kid": 5}, claims(iss=JWKS_ISSUER),
                                   key=rsa.private), "invalid_token"),
        ("NaN in payload", forge(HS, json.dumps(claims())[:-1] + ', "x": NaN}'),
         "invalid_token"),
    ]  # fmt: skip


HOSTILE = [
    "alg none", "alg None", "alg none with a signature",
    "HS256 with the PEM public key (confusion)", "HS256 for an RS provider",
    "right kid, attacker's key", "ES256 signature under an RS256 header",
    "RS256 header on the EC key's kid", "embedded jwk", "jku to attacker", "x5u to attacker",
    "unknown crit", "unknown issuer", "no issuer", "no exp", "expired", "not yet valid",
    "issued in the future", "exp as a string", "iat as a string", "exp as a boolean",
    "absurd exp", "lifetime over the maximum", "wrong audience", "no audience",
    "audience of the wrong type", "audience list with a non-string",
    "audience list without ours", "jti not a string", "expired and wrongly signed",
    "truncated signature", "empty user id", "blank user id", "user id not a string",
    "user id with control characters", "no user id", "duplicate key in payload",
    "duplicate key in header", "oversized", "bad base64", "two segments",
    "payload is an array", "signature stripped", "tampered payload", "wrong secret",
    "unknown kid", "kid not a string", "NaN in payload",
]  # fmt: skip


def test_the_hostile_table_is_whole(keys: dict[str, SigningKey]) -> None:
    """Every case the table builds is one parametrized test below, and none is missing."""
    assert [name for name, _, _ in hostile_cases(keys, "https://x.test")] == HOSTILE


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_token_is_refused(
    broker: TokenbrokerServer,
    upstream: FakeUpstream,
    keys: dict[str, SigningKey],
    jwks: JwksServer,
    attacker: JwksServer,
    name: str,
) -> None:
    """The hostile token gets 401 with an invalid_token challenge, never reaches upstream,
    makes no outbound fetch and never shows in a log."""
    token, code = {n: (t, c) for n, t, c in hostile_cases(keys, attacker.url)}[name]
    response = mint(broker, token)
    assert (response.status_code, response.json()["error"]["code"]) == (401, code)
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert upstream.received() == []
    assert attacker.state.fetches == 0
    assert token not in broker.logs()


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", "Bearer a b")],
        [("Authorization", "Bearer")],
        [("Authorization", f"Bearer {make_token('u')}"), ("Authorization", "Bearer x")],
    ],
)
def test_malformed_or_repeated_authorization_is_400(
    broker: TokenbrokerServer, upstream: FakeUpstream, headers: list[tuple[str, str]]
) -> None:
    """A malformed or repeated Authorization header is 400 invalid_request (RFC 6750 §3.1)."""
    response = httpx.post(broker.url + "/v1/realtime/sessions", json={}, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert 'error="invalid_request"' in response.headers["www-authenticate"]
    assert upstream.received() == []


@pytest.mark.parametrize("value", ["Basic dXNlcjpwYXNz", "Digest username=x", "Token abc"])
def test_another_scheme_is_401_with_a_bearer_challenge(
    broker: TokenbrokerServer, upstream: FakeUpstream, value: str
) -> None:
    """RFC 6750 §3.1: a request with an unsupported scheme has no credentials for this
    resource: 401 and a Bearer challenge without an error code."""
    response = httpx.post(broker.url + "/v1/realtime/sessions", json={},
                          headers={"Authorization": value})  # fmt: skip
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"
    assert response.headers["www-authenticate"] == 'Bearer realm="tokenbroker"'
    assert upstream.received() == []


def test_cors_vary_origin(broker: TokenbrokerServer, upstream: FakeUpstream) -> None:
    """Replies to an allowed origin name it and carry Vary: Origin for caches."""
    response = httpx.post(broker.url + "/v1/realtime/sessions", json={},
                          headers={"Authorization": f"Bearer {make_token('cors')}",
                                   "Origin": "https://app.example"})  # fmt: skip
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert "Origin" in response.headers["vary"]
    assert "RateLimit" in response.headers["access-control-expose-headers"]


def test_jwks_keys_are_fetched_once_for_many_tokens(
    broker: TokenbrokerServer, upstream: FakeUpstream, keys: dict[str, SigningKey], jwks: JwksServer
) -> None:
    """Many mints with JWKS-signed tokens do not refetch the key set."""
    before = jwks.state.fetches
    for i in range(20):
        assert mint(broker, keys["rsa"].sign(claims(iss=JWKS_ISSUER, sub=f"many-{i}"))).is_success
    assert jwks.state.fetches == before


def test_config_refuses_dangerous_providers(tmp_path: Path) -> None:
    """Mixing HS256 with public keys, or fetching JWKS over plain http, is a config error."""
    from tokenbroker.config.load import SettingsError, settings_from_dict

    bad = {"auth": {"providers": [
        {"issuer": "a", "algorithms": ["RS256", "HS256"], "jwks_url": "https://a/jwks"},
        {"issuer": "b", "algorithms": ["RS256"], "jwks_url": "http://idp.example/jwks"},
        {"issuer": "c", "algorithms": ["RS256"]},
    ]}}  # fmt: skip
    with pytest.raises(SettingsError) as caught:
        settings_from_dict(bad, {}, tmp_path)
    assert sorted(caught.value.errors) == [
        "auth.providers[0].algorithms: HS256 needs hs256_secret_env, not a public key",
        "auth.providers[1].jwks_url: must be https:// (http only for loopback)",
        "auth.providers[2]: set exactly one of hs256_secret_env, pem_file, jwks_url",
    ]


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"iat": -700, "exp": -10}, None),  # expired 10 s ago: inside 30 s leeway
        ({"iat": -700, "exp": -60}, "token_expired"),
        ({"nbf": 10}, None),  # valid in 10 s: inside the leeway
        ({"nbf": 60}, "invalid_token"),
        ({"aud": ["other", AUDIENCE]}, None),
    ],
)
async def test_leeway_and_audience_lists(
    tmp_path: Path, overrides: dict[str, Any], code: str | None
) -> None:
    """Times are seconds from now; the leeway covers 30 s of skew either way."""
    from tokenbroker.auth.authenticator import Authenticator
    from tokenbroker.config.load import settings_from_dict
    from tokenbroker.errors import AuthenticationFailed

    provider = {"issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": ["HS256"],
                "hs256_secret_env": "SECRET"}  # fmt: skip
    settings = settings_from_dict(
        {"auth": {"providers": [provider], "leeway": "30s"}}, {"SECRET": JWT_SECRET}, tmp_path
    )
    at = now()
    times = {k: at + v for k, v in overrides.items() if k in ("iat", "exp", "nbf")}
    token = forge(HS, claims(**{**overrides, **times}))
    authenticator = Authenticator(settings.auth)
    if code is None:
        assert (await authenticator.verify(token)).user_id == "mallory"
    else:
        with pytest.raises(AuthenticationFailed) as caught:
            await authenticator.verify(token)
        assert caught.value.code == code


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def hs_settings(tmp_path: Path, **auth: Any) -> Any:
    from tokenbroker.config.load import settings_from_dict

    provider = {"issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": ["HS256"],
                "hs256_secret_env": "SECRET"}  # fmt: skip
    raw = {"auth": {"providers": [provider], "leeway": "30s", **auth}}
    return settings_from_dict(raw, {"SECRET": JWT_SECRET}, tmp_path)


async def test_a_verified_token_is_remembered_until_it_expires(tmp_path: Path) -> None:
    """A second presentation is a cache hit; past exp + leeway the token is refused again;
    the least recently used entry leaves first when the byte budget is full; 0 turns the
    cache off, and an entry larger than the budget is simply not kept."""
    from tokenbroker.auth.authenticator import Authenticator, entry_size
    from tokenbroker.errors import AuthenticationFailed

    NOW = now()
    clock = Clock(NOW)
    token = forge(HS, claims(sub="short", iat=NOW, exp=NOW + 60))
    entry = entry_size(token, claims(sub="short", iat=NOW, exp=NOW + 60))
    two_entries = 2 * entry + 10  # room for two entries, not three
    authenticator = Authenticator(
        hs_settings(tmp_path, verified_cache_bytes=two_entries).auth, clock=clock
    )
    first = await authenticator.verify(token)
    assert await authenticator.verify(token) is first
    clock.now = NOW + 60 + 29
    assert await authenticator.verify(token) is first
    clock.now = NOW + 60 + 30
    with pytest.raises(AuthenticationFailed) as caught:
        await authenticator.verify(token)
    assert caught.value.code == "token_expired"

    clock.now = NOW
    b, c, d = (forge(HS, claims(sub=name)) for name in "bcd")
    seen = {t: await authenticator.verify(t) for t in (b, c)}
    assert await authenticator.verify(b) is seen[b]  # b is now the most recently used
    await authenticator.verify(d)  # evicts c
    assert await authenticator.verify(b) is seen[b]
    again = await authenticator.verify(c)
    assert again == seen[c] and again is not seen[c]

    for budget in (0, 100):  # off; smaller than one entry
        uncached = Authenticator(
            hs_settings(tmp_path, verified_cache_bytes=budget).auth, clock=clock
        )
        one, two = await uncached.verify(b), await uncached.verify(b)
        assert one == two and one is not two


async def test_a_key_rotated_out_of_the_jwks_ends_a_cached_verification(tmp_path: Path) -> None:
    """The hit asks the provider for the token's key again: once the JWKS no longer has
    it, the remembered token is refused like a new one."""
    from tokenbroker.auth.authenticator import Authenticator
    from tokenbroker.config.load import settings_from_dict
    from tokenbroker.errors import AuthenticationFailed

    old, new = new_key("old-key", "RS256"), new_key("new-key", "RS256")
    server = JwksServer()
    try:
        server.reset(old)
        provider = {"issuer": JWKS_ISSUER, "audiences": [AUDIENCE], "algorithms": ["RS256"],
                    "jwks_url": server.url}  # fmt: skip
        settings = settings_from_dict({"auth": {"providers": [provider]}}, {}, tmp_path)
        clock = Clock(now())
        async with httpx.AsyncClient() as client:
            authenticator = Authenticator(settings.auth, client, clock=clock)
            token = old.sign(claims(iss=JWKS_ISSUER, sub="rotated"))
            first = await authenticator.verify(token)
            assert await authenticator.verify(token) is first
            server.reset(new)
            clock.now += 601  # past the key set's TTL: the next lookup refetches
            with pytest.raises(AuthenticationFailed) as caught:
                await authenticator.verify(token)
            assert caught.value.reason == "unknown kid 'old-key'"
            renewed = new.sign(claims(iss=JWKS_ISSUER, sub="rotated"))
            assert (await authenticator.verify(renewed)).user_id == "rotated"
    finally:
        server.stop()


@pytest.mark.parametrize("extra_claims", [0, 40, 150])  # 150: near the 8 KiB token cap
async def test_the_token_cache_stays_within_its_byte_budget(
    tmp_path: Path, extra_claims: int
) -> None:
    """Tokens with few or many claims: what the cache really holds (tracemalloc) stays
    within its byte budget, give or take 25 %."""
    import gc
    import tracemalloc

    from tokenbroker.auth.authenticator import Authenticator

    budget = 2 * 1024 * 1024
    authenticator = Authenticator(hs_settings(tmp_path, verified_cache_bytes=budget).auth)
    padding = {f"claim_{i}": f"value-{i}" for i in range(extra_claims)}
    tokens = [forge(HS, claims(sub=f"user-{i}", **padding)) for i in range(3000)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for token in tokens:
            await authenticator.verify(token)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert held <= budget * 1.25, (held, budget)
