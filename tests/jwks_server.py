"""A real JWKS endpoint on loopback for tests, with knobs for rotation and failure."""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey
    use: str = "sig"

    @property
    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            data = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            data = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
        return {**data, "kid": self.kid, "use": self.use, "alg": self.alg}

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg,
                          headers={"kid": self.kid, **headers})  # fmt: skip


def new_key(kid: str, alg: str = "RS256") -> SigningKey:
    private: PrivateKey
    if alg[:2] in ("RS", "PS"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "ES384":
        private = ec.generate_private_key(ec.SECP384R1())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return SigningKey(kid, alg, private)


@dataclass
class JwksState:
    keys: list[SigningKey] = field(default_factory=list)
    status: int = 200
    cache_control: str | None = None
    redirect: bool = False
    oversize: bool = False
    extra: list[dict[str, Any]] = field(default_factory=list)
    fetches: int = 0


class JwksServer:
    """Serves ``/jwks.json`` from ``state``; runs uvicorn in a thread on a pre-bound socket."""

    def __init__(self) -> None:
        self.state = JwksState()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/jwks.json"
        config = uvicorn.Config(self._app(), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[self._sock])), daemon=True
        )
        self._thread.start()

    def _app(self) -> Starlette:
        async def jwks(request: Request) -> Response:
            state = self.state
            state.fetches += 1
            if state.redirect:
                return RedirectResponse("/elsewhere.json", 302)
            if state.status != 200:
                return Response(b"provider down", state.status)
            body: dict[str, Any] = {"keys": [k.jwk for k in state.keys] + state.extra}
            if state.oversize:
                body["padding"] = "x" * 300_000
            headers = {"Cache-Control": state.cache_control} if state.cache_control else {}
            return JSONResponse(body, headers=headers)

        return Starlette(routes=[Route("/jwks.json", jwks), Route("/elsewhere.json", jwks)])

    def reset(self, *keys: SigningKey) -> None:
        self.state = JwksState(keys=list(keys))

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
