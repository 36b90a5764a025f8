"""The ``tokenbroker`` command: parses flags and hands settings to the thing that runs."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import BrokerError
from .limits import parse_duration
from .policy import PolicyError
from .policy_store import parse_policy_text
from .server import run
from .settings import ProviderSettings, Settings, SettingsError, load_settings

DEFAULT_CONFIG = "config/broker.yaml"


def _settings(args: argparse.Namespace, *, require_secrets: bool = True) -> Settings:
    path = args.config or os.environ.get("TOKENBROKER_CONFIG") or DEFAULT_CONFIG
    try:
        return load_settings(path, os.environ, require_secrets=require_secrets)
    except SettingsError as exc:
        sys.exit(f"tokenbroker: {exc}")


def cmd_serve(args: argparse.Namespace) -> None:
    from .app import create_app
    from .logs import configure_logging
    from .runtime import redis_runtime

    settings = _settings(args)
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings, redis_runtime)
    port = settings.port if args.port is None else args.port
    run(
        app,
        args.host or settings.host,
        port,
        delay=settings.shutdown_delay,
        grace=settings.shutdown_grace,
    )


def dev_settings(policies: Path, secret: str) -> Settings:
    provider = ProviderSettings(
        "dev", "tokenbroker-dev", ("tokenbroker",), ("HS256",), hs256_secret=secret
    )
    return Settings(providers=(provider,), policies_file=policies, fail_mode="local")


def cmd_dev(args: argparse.Namespace) -> None:
    from .app import create_app
    from .devtokens import DEV_AUDIENCE, DEV_ISSUER, dev_signing_key, sign_token
    from .logs import configure_logging
    from .runtime import memory_runtime

    policies = Path(args.policies)
    if not policies.is_file():
        sys.exit(f"tokenbroker dev: no policy file at {policies} (pass --policies FILE)")
    secret = dev_signing_key(os.environ)
    settings = dev_settings(policies, secret)

    def token() -> str:
        return sign_token(
            secret, issuer=DEV_ISSUER, audience=DEV_AUDIENCE, sub=args.sub, ttl=12 * 3600
        )

    page = (Path(__file__).parent / "demo.html").read_text()

    def index_html() -> str:
        return page.replace("__TOKEN__", token()).replace("__SUB__", args.sub)

    configure_logging("info", "json")
    url = f"http://{args.host}:{args.port}"
    body = json.dumps({"voice": "ash"})
    print(
        f"tokenbroker dev: in-process store, fake upstream, dev signing key.\n"
        f"Demo page: {url}/\n"
        f"Try it (token for user {args.sub!r}, valid 12 h):\n\n"
        f"curl -sS -X POST {url}/v1/realtime/sessions \\\n"
        f"  -H 'Authorization: Bearer {token()}' \\\n"
        f"  -H 'Content-Type: application/json' -d {shlex.quote(body)}\n",
        flush=True,
    )
    run(create_app(settings, memory_runtime, index_html=index_html), args.host, args.port, grace=5)


def cmd_token(args: argparse.Namespace) -> None:
    from .devtokens import DEV_AUDIENCE, DEV_ISSUER, dev_signing_key, sign_token

    claims: dict[str, Any] = {}
    for item in args.claim:
        key, sep, value = item.partition("=")
        if not sep:
            sys.exit(f"tokenbroker token: --claim wants key=value, got {item!r}")
        claims[key] = value
    if args.config or os.environ.get("TOKENBROKER_CONFIG"):
        settings = _settings(args)
        provider = next((p for p in settings.providers if p.hs256_secret), None)
        if provider is None:
            sys.exit("tokenbroker token: no HS256 provider with a secret in this config")
        secret, issuer = provider.hs256_secret or "", provider.issuer
        audience = provider.audiences[0] if provider.audiences else None
    else:
        secret, issuer, audience = dev_signing_key(os.environ), DEV_ISSUER, DEV_AUDIENCE
    print(
        sign_token(
            secret, issuer=issuer, audience=audience, sub=args.sub, claims=claims, ttl=args.ttl
        )
    )


def cmd_fake_upstream(args: argparse.Namespace) -> None:
    from .fake_upstream import FakeControls, create_fake_upstream
    from .logs import configure_logging

    configure_logging("info", "json")
    controls = FakeControls(
        api_key=args.api_key,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        record=not args.no_record,
    )
    run(create_fake_upstream(controls), args.host, args.port, grace=1)


# --- operator commands: the same Operations as the admin API ---------------------------


def _print_policy_errors(path: str, exc: PolicyError) -> None:
    print(f"{path}: invalid policy document", file=sys.stderr)
    for error in exc.errors:
        print(f"  {error}", file=sys.stderr)


def _read_policy_file(path: str) -> str:
    try:
        text = Path(path).read_text()
        parse_policy_text(text)
    except OSError as exc:
        sys.exit(f"tokenbroker: cannot read {path}: {exc}")
    except PolicyError as exc:
        _print_policy_errors(path, exc)
        sys.exit(1)
    return text


async def _operate(args: argparse.Namespace) -> None:
    from .audit import RedisAudit
    from .limiter import RedisLimiter
    from .operations import Operations
    from .policy_store import RedisPolicyStore
    from .redis_clients import connect

    settings = dataclasses.replace(_settings(args, require_secrets=False), redis_timeout=5.0)
    client = connect(settings)
    ops = Operations(
        RedisPolicyStore(client, settings.redis_prefix),
        RedisLimiter(client, settings.redis_prefix, cluster=settings.redis_cluster),
        RedisAudit(client, f"{settings.redis_prefix}:audit", settings.audit_max_entries),
    )
    try:
        await _dispatch(args, ops)
    except BrokerError as exc:
        sys.exit(f"tokenbroker: {exc.message}")
    finally:
        await client.aclose()


async def _dispatch(args: argparse.Namespace, ops: Any) -> None:
    sub_command = getattr(args, "policy_command", None) or getattr(args, "user_command", None)
    action = f"{args.command} {sub_command or args.audit_command}"
    if action == "policy apply":
        applied = await ops.apply(_read_policy_file(args.file), dry_run=args.dry_run,
                                  note=args.file)  # fmt: skip
        print(applied.diff or "no changes")
        print(
            "dry run: nothing applied" if args.dry_run else f"applied as version {applied.version}"
        )
    elif action == "policy show":
        live, _ = await ops.live()
        print(live.text if live else "no policies applied yet", end="" if live else "\n")
    elif action == "policy history":
        live, _ = await ops.live()
        for item in await ops.history():
            mark = "*" if live and item.version == live.version else " "
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(item.applied_at))
            print(f"{mark} {item.version:>5}  {stamp}Z  {item.note}")
    elif action == "policy rollback":
        version = await ops.rollback(args.version)
        print(f"rolled back to version {args.version} as version {version}")
    elif action == "user assign":
        await ops.assign(args.sub, args.policy)
        print(json.dumps(await ops.user(args.sub), indent=2))
    elif action == "user unassign":
        await ops.unassign(args.sub)
        print(json.dumps(await ops.user(args.sub), indent=2))
    elif action == "user show":
        print(json.dumps(await ops.user(args.sub), indent=2))
    elif action == "user reset":
        await ops.reset(args.sub)
        print(json.dumps(await ops.user(args.sub), indent=2))
    elif action == "audit tail":
        since = None
        if args.since:
            since = int((time.time() - parse_duration(args.since)) * 1000)
        entries = await ops.audit.read(user=args.user, since_ms=since, count=args.count)
        for entry in reversed(entries):  # oldest first, like tail
            print(json.dumps(entry))


def cmd_policy(args: argparse.Namespace) -> None:
    if args.policy_command == "validate":
        _read_policy_file(args.file)
        print(f"{args.file}: valid")
    else:
        asyncio.run(_operate(args))


def cmd_operate(args: argparse.Namespace) -> None:
    asyncio.run(_operate(args))


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
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8080)
    dev.add_argument("--policies", default="config/policies.yaml")
    dev.add_argument("--sub", default="dev-user", help="user id of the printed token")
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
    psub.add_parser("validate").add_argument("file")
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

    audit = sub.add_parser("audit", help="read the audit trail of mint attempts")
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
