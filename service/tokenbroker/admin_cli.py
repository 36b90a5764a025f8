"""The operator commands (``policy``, ``user``, ``calls``, ``audit``): the same Operations
as the admin API, on the store named by the config."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenbroker.config.load import SettingsError, config_path, environment, load_settings
from tokenbroker.config.settings import Settings
from tokenbroker.errors import BrokerError
from tokenbroker.families import vocabulary as family_vocabulary
from tokenbroker.limits.rules import parse_duration
from tokenbroker.policy.model import PolicyError, PolicySet
from tokenbroker.policy.parse import parse_policy_text
from tokenbroker.policy.vocabulary import Vocabulary


def settings_from_args(args: argparse.Namespace, *, require_secrets: bool = True) -> Settings:
    """The settings named by ``--config`` (or the environment), or exit naming every error."""
    path = config_path(args.config, environment())
    try:
        return load_settings(path, environment(), require_secrets=require_secrets)
    except SettingsError as exc:
        sys.exit(f"tokenbroker: {exc}")


def _print_policy_errors(path: str, exc: PolicyError) -> None:
    print(f"{path}: invalid policy document", file=sys.stderr)
    for error in exc.errors:
        print(f"  {error}", file=sys.stderr)


def _read_policy_file(path: str, vocabulary: Vocabulary) -> tuple[str, PolicySet]:
    """The file's text and document if it is valid, else exit naming every error."""
    try:
        text = Path(path).read_text()
        return text, parse_policy_text(text, vocabulary)
    except OSError as exc:
        sys.exit(f"tokenbroker: cannot read {path}: {exc}")
    except PolicyError as exc:
        _print_policy_errors(path, exc)
        sys.exit(1)


def _print_notes(notes: Iterable[str]) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


async def _operate(args: argparse.Namespace) -> None:
    from tokenbroker.families.live.sideband import LiveSideband
    from tokenbroker.families.realtime.upstream import CallsUpstream
    from tokenbroker.flow.operations import Operations
    from tokenbroker.infra.audit import RedisAudit
    from tokenbroker.infra.metrics import Metrics
    from tokenbroker.infra.redis import connect
    from tokenbroker.limits.ledger import Ledger
    from tokenbroker.limits.redis import RedisLimiter
    from tokenbroker.policy.store import RedisPolicyStore
    from tokenbroker.registry.registry import Registry
    from tokenbroker.wiring import open_upstream

    base = settings_from_args(args, require_secrets=False)
    redis = base.redis.model_copy(update={"timeout": 5.0})  # operators wait longer than mints
    settings = base.model_copy(update={"redis": redis})
    client = connect(settings)
    registry = Registry(client, settings.redis.prefix)
    up = settings.upstream
    try:
        async with open_upstream(settings, Metrics(), up.url, up.api_key, up.proxy) as upstream:
            calls, sideband = CallsUpstream(upstream), LiveSideband(upstream)
            enders = {"realtime": calls.hangup, "live": sideband.end}

            async def end(record: Any, reason: str) -> bool:
                """A Realtime call is hung up; a GPT-Live session closed on its sideband."""
                if not await registry.mark(record.call_id, reason):
                    return False
                return await enders.get(record.api, calls.hangup)(record.call_id)

            ops = Operations(
                RedisPolicyStore(client, settings.redis.prefix),
                RedisLimiter(client, settings.redis.prefix, cluster=settings.redis.cluster),
                RedisAudit(client, f"{settings.redis.prefix}:audit", settings.audit.max_entries),
                family_vocabulary(settings.upstream.dialect),
                registry=registry,
                ledger=Ledger(client, settings.redis.prefix),
                end_call=end,
            )
            try:
                await _dispatch(args, ops)
            finally:
                await calls.close()
                await sideband.close()
    except BrokerError as exc:
        sys.exit(f"tokenbroker: {exc.message}")
    finally:
        await client.aclose()


async def _dispatch(args: argparse.Namespace, ops: Any) -> None:
    sub_command = (getattr(args, "policy_command", None) or getattr(args, "user_command", None)
                   or getattr(args, "calls_command", None))  # fmt: skip
    action = f"{args.command} {sub_command or args.audit_command}"
    if action == "policy apply":
        text, _ = _read_policy_file(args.file, ops.vocabulary)
        applied = await ops.apply(text, dry_run=args.dry_run, note=args.file)
        _print_notes(applied.notes)
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
    elif action == "calls list":
        for call in await ops.calls():
            print(json.dumps(call))
    elif action == "calls hangup":
        print(json.dumps(await ops.hang_up(args.call_id)))
    elif action == "audit tail":
        since = None
        if args.since:
            since = int((time.time() - parse_duration(args.since)) * 1000)
        entries = await ops.audit.read(user=args.user, since_ms=since, count=args.count)
        for entry in reversed(entries):  # oldest first, like tail
            print(json.dumps(entry))


async def _check_models(settings: Settings, named: Mapping[str, Sequence[str]]) -> None:
    """A warning for each named model the upstream says shuts down within 30 days; a note
    when its model list cannot be read (the file is still valid)."""
    from tokenbroker.flow.lifecycle import shutdowns, soon
    from tokenbroker.infra.metrics import Metrics
    from tokenbroker.upstream.models import ModelListUnavailable, list_models
    from tokenbroker.wiring import open_upstream

    up = settings.upstream
    async with open_upstream(settings, Metrics(), up.url, up.api_key, up.proxy) as upstream:
        try:
            listed = await list_models(upstream)
        except ModelListUnavailable as exc:
            _print_notes([f"the upstream's model list could not be read ({exc}): shutdown "
                          "dates not checked"])  # fmt: skip
            return
    today = datetime.datetime.now(datetime.UTC).date()
    for shutdown in soon(shutdowns(named, listed, today)):
        print(f"warning: {shutdown.sentence()}", file=sys.stderr)


def cmd_policy(args: argparse.Namespace) -> None:
    if args.policy_command == "validate":
        settings = settings_from_args(args, require_secrets=False) if args.config else None
        dialect = settings.upstream.dialect if settings is not None else args.dialect
        vocabulary = family_vocabulary(dialect)
        _, document = _read_policy_file(args.file, vocabulary)
        _print_notes(vocabulary.notes(document.policies.values()))
        if settings is not None:
            asyncio.run(_check_models(settings, vocabulary.models(document.policies.values())))
        print(f"{args.file}: valid for dialect {dialect}")
    else:
        asyncio.run(_operate(args))


def cmd_operate(args: argparse.Namespace) -> None:
    asyncio.run(_operate(args))
