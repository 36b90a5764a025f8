"""The Realtime API's client secrets: the seed's ``POST /v1/realtime/sessions`` and the
GA ``POST /v1/realtime/client_secrets``, over the shared steps of :class:`Broker`
(identity, policy, budgets, limits, refunds) and this family's dialect upstream."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tokenbroker.errors import BrokerError
from tokenbroker.families.realtime.dialects import Dialect
from tokenbroker.families.realtime.dialects.base import Minted
from tokenbroker.families.realtime.dialects.ga import from_ga, ga_path
from tokenbroker.families.realtime.enforce import Enforced, enforce
from tokenbroker.families.realtime.enforce_ga import enforce_ga
from tokenbroker.families.realtime.request_ga import validate_client_secret_request
from tokenbroker.families.realtime.session import validate_session
from tokenbroker.flow.context import RequestContext
from tokenbroker.flow.mint import Broker, MintReply, policy_adjusted
from tokenbroker.infra.strict_json import parse_body
from tokenbroker.limits.rules import LimitRule
from tokenbroker.policy.model import Policy


def enforce_ga_session(policy: Policy, seed: dict[str, Any]) -> Enforced:
    """:func:`enforce` on the seed fields of a GA-shaped session (the GA endpoint, live
    calls), a refusal naming the field by the request's own path
    (``session.audio.output.voice``, not ``voice``)."""
    try:
        return enforce(policy, seed)
    except BrokerError as exc:
        if exc.param:
            path = ga_path(exc.param)
            exc.message = exc.message.replace(f"'{exc.param}'", f"'{path}'")
            exc.param = path
        raise


class RealtimeMint:
    def __init__(self, broker: Broker, dialect: Dialect) -> None:
        self.broker = broker
        self.dialect = dialect

    async def mint(
        self, authorization: Sequence[str], body: bytes, log: RequestContext
    ) -> MintReply:
        """The seed's endpoint: a session config in, ``{client_secret, model}`` out."""
        user_id, claims = await self.broker.identify(authorization, log)
        request = validate_session(parse_body(body))
        policy, global_limits = self.broker.policy(user_id, claims, log)
        await self.broker.admit(user_id, policy, call=False)
        enforced = enforce(policy, request)
        minted, headers = await self._mint(
            user_id, policy, global_limits, enforced.session, {}, enforced.adjusted, log
        )
        return MintReply(
            {
                "client_secret": {"value": minted.value, "expires_at": minted.expires_at},
                "model": enforced.session["model"],
            },
            headers,
        )

    async def mint_client_secret(
        self, authorization: Sequence[str], body: bytes, log: RequestContext
    ) -> MintReply:
        """The GA endpoint: ``{expires_after, session}`` in, ``{value, expires_at, session:
        {type, model}}`` out (never the instructions, tools, prompt or tracing)."""
        user_id, claims = await self.broker.identify(authorization, log)
        request = validate_client_secret_request(parse_body(body))
        seed, ga_only = from_ga(request.get("session") or {"type": "realtime"})
        policy, global_limits = self.broker.policy(user_id, claims, log)
        await self.broker.admit(user_id, policy, call=False)
        enforced = enforce_ga_session(policy, seed)
        ttl = (request.get("expires_after") or {}).get("seconds")
        extra, clamped = enforce_ga(policy, ga_only, ttl)
        minted, headers = await self._mint(
            user_id, policy, global_limits, enforced.session, extra,
            (*enforced.adjusted, *clamped), log, paths=ga_path,
        )  # fmt: skip
        session = {"type": extra["type"]}
        if extra["type"] == "realtime":
            session["model"] = enforced.session["model"]
        return MintReply(
            {"value": minted.value, "expires_at": minted.expires_at, "session": session}, headers
        )

    async def _mint(
        self,
        user_id: str,
        policy: Policy,
        global_limits: tuple[LimitRule, ...],
        session: dict[str, Any],
        ga_only: dict[str, Any],
        adjusted: tuple[str, ...],
        log: RequestContext,
        paths: Callable[[str], str] | None = None,
    ) -> tuple[Minted, dict[str, str]]:
        """A client secret from the upstream, in its dialect; ``paths`` names the fields in
        Policy-Adjusted as the request has them (GA requests)."""
        log.model = session.get("model")
        log.voice = session.get("voice")
        request_body, dropped = self.dialect.shape(session, ga_only)
        dialect, upstream = self.dialect, self.broker.upstream
        minted, headers = await self.broker.charged(
            user_id, policy, global_limits,
            lambda: upstream.post(dialect.path, request_body, dialect.parse), log,
        )  # fmt: skip
        if adjusted or dropped:  # clamped, or not sent: this dialect lacks it
            headers["Policy-Adjusted"] = policy_adjusted((*adjusted, *dropped), paths)
        return minted, headers
