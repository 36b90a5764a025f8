"""tokenbroker: OpenAI Realtime for browser apps without the organisation's API key.

Per-user policies, rate limits and budgets, client secrets or live calls watched from
the server side. `tokenbroker dev` runs it on the embedded default (no Redis, no key, no
network); `tokenbroker serve` is production. Each command has its own --help."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from tokenbroker.admin_cli import cmd_operate, cmd_policy, settings_from_args
from tokenbroker.config.load import DEFAULT_CONFIG, environment
from tokenbroker.config.settings import (
    AuthSettings,
    CorsSettings,
    PoliciesSettings,
    ProviderSettings,
    Settings,
)
from tokenbroker.http.protocol import ProtocolLimits
from tokenbroker.server import run


def cmd_serve(args: argparse.Namespace) -> None:
    from tokenbroker.http.app import create_app
    from tokenbroker.infra.logs import configure_logging
    from tokenbroker.wiring import redis_runtime

    settings = settings_from_args(args)
    configure_logging(settings.log.level, settings.log.format)
    app = create_app(settings, redis_runtime)
    port = settings.server.port if args.port is None else args.port
    run(
        app,
        args.host or settings.server.host,
        port,
        delay=settings.shutdown.delay,
        grace=settings.shutdown.grace,
        limits=ProtocolLimits(
            settings.server.max_connections,
            settings.http.max_header_bytes,
            settings.http.header_timeout,
            settings.http.body_timeout,
        ),
    )


def dev_settings(policies: Path, secret: str, origins: Sequence[str] = ()) -> Settings:
    # validated as data: its after-validator returns a copy, which __init__ warns about
    provider = ProviderSettings.model_validate(
        {"name": "dev", "issuer": "tokenbroker-dev", "audiences": ("tokenbroker",),
         "algorithms": ("HS256",), "hs256_secret": secret}
    )  # fmt: skip
    return Settings(
        auth=AuthSettings(providers=(provider,)),
        policies=PoliciesSettings(file=policies),
        fail_mode="local",
        cors=CorsSettings(allowed_origins=tuple(origins), allow_loopback=True),
    )


def _dev_policy(policies: Path, sub: str) -> tuple[str, dict[str, str]]:
    """What the policy of the printed token's user allows, in a sentence a person reads at
    start, and a request body it accepts (one of its voices) for the printed curl."""
    from tokenbroker.families import vocabulary as family_vocabulary
    from tokenbroker.families.realtime.rules import rules_of
    from tokenbroker.policy.parse import parse_policy_text

    policy = parse_policy_text(policies.read_text(), family_vocabulary("openai")).select(sub, {})
    limits = ", ".join(f"{r.limit} per {r.per_text}" for r in policy.limits) or "no limit"
    calls = policy.calls
    live = f", {calls.max_live_calls} live per user" if calls.max_live_calls else ""
    rules = rules_of(policy)
    parts = [f"models {', '.join(rules.models)}",
             f"voices {', '.join(rules.voices or ('any',))}",
             f"requests (mints and calls): {limits} per user",
             f"calls up to {calls.max_duration / 60:g} min{live}"]  # fmt: skip
    parts += [f"budget {b.name}" for b in policy.budgets]
    gpt_live = policy.sections.get("live")
    if gpt_live is not None:
        parts.append(f"GPT-Live models {', '.join(gpt_live.models)}")
    parts.append("more: docs/getting-started.md")
    voice = rules.voices[0] if rules.voices else "alloy"
    return f"policy {policy.name!r} ({policies}): " + "; ".join(parts), {"voice": voice}


def cmd_dev(args: argparse.Namespace) -> None:
    from tokenbroker.dev.runtime import memory_runtime
    from tokenbroker.dev.tokens import DEV_AUDIENCE, DEV_ISSUER, dev_signing_key, sign_token
    from tokenbroker.http.app import create_app
    from tokenbroker.infra.logs import configure_logging

    if args.policies is None:
        policies = Path(str(resources.files("tokenbroker.dev").joinpath("policies.yaml")))
    else:
        policies = Path(args.policies)
    if not policies.is_file():
        sys.exit(f"tokenbroker dev: no policy file at {policies} (pass --policies FILE)")
    secret = dev_signing_key(environment())
    settings = dev_settings(policies, secret, args.cors_origin)

    def token() -> str:
        return sign_token(
            secret, issuer=DEV_ISSUER, audience=DEV_AUDIENCE, sub=args.sub, ttl=12 * 3600
        )

    page = resources.files("tokenbroker.dev").joinpath("demo.html").read_text()

    def index_html() -> str:
        return page.replace("__TOKEN__", token()).replace("__SUB__", args.sub)

    configure_logging("info", "json")
    url = f"http://{args.host}:{args.port}"
    description, example = _dev_policy(policies, args.sub)
    body = json.dumps(example)
    origins = ", ".join(["localhost and 127.0.0.1 (any port)", *args.cors_origin])
    print(
        f"tokenbroker dev: in-process store, fake upstream, dev signing key.\n"
        f"Dev {description}\n"
        f"Browsers may call it from: {origins}\n"
        f"Demo page: {url}/   Browser client: {url}/v1/client.js\n"
        f"Try it (token for user {args.sub!r}, valid 12 h):\n\n"
        f"curl -sS -X POST {url}/v1/realtime/sessions \\\n"
        f"  -H 'Authorization: Bearer {token()}' \\\n"
        f"  -H 'Content-Type: application/json' -d {shlex.quote(body)}\n",
        flush=True,
    )
    run(create_app(settings, memory_runtime, index_html=index_html), args.host, args.port, grace=5)


def cmd_token(args: argparse.Namespace) -> None:
    from tokenbroker.dev.tokens import DEV_AUDIENCE, DEV_ISSUER, dev_signing_key, sign_token

    claims: dict[str, Any] = {}
    for item in args.claim:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"tokenbroker token: --claim wants key=value, got {item!r}")
        claims[key] = value
    if args.config or "TOKENBROKER_CONFIG" in environment():
        settings = settings_from_args(args)
        provider = next((p for p in settings.auth.providers if p.hs256_secret), None)
        if provider is None:
            sys.exit("tokenbroker token: no HS256 provider with a secret in this config")
        secret, issuer = provider.hs256_secret or "", provider.issuer
        audience = provider.audiences[0] if provider.audiences else None
    else:
        secret, issuer, audience = dev_signing_key(environment()), DEV_ISSUER, DEV_AUDIENCE
    print(
        sign_token(
            secret, issuer=issuer, audience=audience, sub=args.sub, claims=claims, ttl=args.ttl
        )
    )


def cmd_fake_upstream(args: argparse.Namespace) -> None:
    from tokenbroker.fake_upstream.app import FakeControls, create_fake_upstream
    from tokenbroker.http.protocol import ProtocolLimits
    from tokenbroker.infra.logs import configure_logging

    configure_logging("info", "json")
    controls = FakeControls(
        api_key=args.api_key,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        record=not args.no_record,
    )
    # It holds a WebSocket per live call (thousands in the benchmark): no connection cap.
    limits = ProtocolLimits(max_connections=1_000_000)
    run(create_fake_upstream(controls), args.host, args.port, grace=1, limits=limits)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenbroker", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--config", help=f"broker YAML (default $TOKENBROKER_CONFIG or {DEFAULT_CONFIG})"
        )
        return p

    serve = with_config(sub.add_parser("serve", help="run the broker"))
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=cmd_serve)

    dev = sub.add_parser("dev", help="run on the embedded default: no Redis, key or network")
    dev.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    dev.add_argument("--policies", help="policy file (default: the packaged dev policy)")
    dev.add_argument("--sub", default="dev-user", help="user id of the printed token")
    dev.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN",
        help="an origin whose pages may call the broker, e.g. http://app.test:5173 "
        "(repeatable; localhost and 127.0.0.1 origins are allowed anyway)",
    )  # fmt: skip
    dev.set_defaults(func=cmd_dev)

    token = with_config(sub.add_parser("token", help="print a dev JWT"))
    token.add_argument("--sub", required=True)
    token.add_argument("--claim", action="append", default=[], metavar="KEY=VALUE")
    token.add_argument("--ttl", type=int, default=3600, help="seconds")
    token.set_defaults(func=cmd_token)

    fake = sub.add_parser("fake-upstream", help="serve a local stand-in for the upstream API")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8090)
    fake.add_argument("--api-key", help="the only key accepted (default: any bearer key)")
    fake.add_argument("--latency-ms", type=float, default=0.0)
    fake.add_argument("--fail-rate", type=float, default=0.0, help="chance of a 500, 0..1")
    fake.add_argument("--no-record", action="store_true", help="do not keep received requests")
    fake.set_defaults(func=cmd_fake_upstream)

    policy = sub.add_parser("policy", help="validate, apply and inspect policy versions")
    psub = policy.add_subparsers(dest="policy_command", required=True)
    check = psub.add_parser("validate", help="check a policy file for an upstream dialect")
    check.add_argument("file")
    check.add_argument("--dialect", default="openai", choices=("openai", "openai-beta", "azure"))
    check.add_argument(
        "--config",
        help="broker YAML: its dialect, and its upstream's model list "
        "read (with the key from the environment) for models that shut down "
        "within 30 days",
    )
    apply = with_config(psub.add_parser("apply"))
    apply.add_argument("file")
    apply.add_argument("--dry-run", action="store_true")
    with_config(psub.add_parser("show"))
    with_config(psub.add_parser("history"))
    rollback = with_config(psub.add_parser("rollback"))
    rollback.add_argument("version", type=int)
    policy.set_defaults(func=cmd_policy)

    user = sub.add_parser("user", help="assign policies to users, inspect and reset limits")
    usub = user.add_subparsers(dest="user_command", required=True)
    assign = with_config(usub.add_parser("assign"))
    assign.add_argument("sub")
    assign.add_argument("policy")
    for name in ("unassign", "show", "reset"):
        with_config(usub.add_parser(name)).add_argument("sub")
    user.set_defaults(func=cmd_operate)

    calls = sub.add_parser("calls", help="list live calls, hang one up")
    csub = calls.add_subparsers(dest="calls_command", required=True)
    with_config(csub.add_parser("list", help="every live call, one JSON object per line"))
    with_config(csub.add_parser("hangup", help="end a live call (reason: operator)")).add_argument(
        "call_id"
    )
    calls.set_defaults(func=cmd_operate)

    audit = sub.add_parser("audit", help="read the audit trail of mint and call attempts")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    tail = with_config(asub.add_parser("tail", help="the latest entries, oldest first"))
    tail.add_argument("--user", help="only this user id")
    tail.add_argument("--since", help="only entries newer than this, like 10m or 2h")
    tail.add_argument("--count", type=int, default=50)
    audit.set_defaults(func=cmd_operate)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":  # pragma: no cover
    main()
