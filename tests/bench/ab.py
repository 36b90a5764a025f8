"""A/B of two versions of the broker, loaded at the same time: CPU per mint, paired.

    git worktree add /tmp/baseline REV
    .venv/bin/python tests/bench/ab.py /tmp/baseline [--rounds 8] [--pin]
    .venv-bench/bin/python tests/bench/ab.py . --baseline-python .venv/bin/python --pin

Starts Redis, one fake upstream and two brokers with the same settings: this checkout's
and the baseline's (its ``service/`` first on PYTHONPATH, the same virtualenv otherwise,
or the interpreter given). Each round loads both with a wrk of 32 connections for 5 s
(order alternating) and prints the ratio of their CPU per mint; the median over rounds is
the answer. ``--pin`` puts both brokers on the first core and everything else on the
last. Not part of the suite: a tool for checking that a change costs nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from harness import FULL, Bench, policies_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("baseline", type=Path, help="a checkout of the version to compare with")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--baseline-python", help="the baseline broker's interpreter")
    parser.add_argument("--pin", action="store_true", help="both brokers on the first core")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    if args.pin:
        os.sched_setaffinity(0, {cores[-1]})  # what starts from here inherits the last core
    work = Path(tempfile.mkdtemp(prefix="tokenbroker-ab-"))
    bench = Bench(FULL, work)
    try:
        bench.redis()
        fake = bench.fake("fake")
        policies = policies_file(work / "policies.yaml", 1, 0)
        new = bench.broker("new", fake, policies, "new")
        os.environ["PYTHONPATH"] = str(args.baseline.resolve() / "service")
        old = bench.broker("old", fake, policies, "old", python=args.baseline_python)
        del os.environ["PYTHONPATH"]
        for broker in (new, old) if args.pin else ():
            broker.pin(cores[0])
        tokens = bench.tokens("users", [f"user-{i}" for i in range(2000)])
        bench.loaded_together([(new, tokens), (old, tokens)], 32, 3)  # warm-up
        ratios = []
        for i in range(args.rounds):
            order = [(new, tokens), (old, tokens)][:: 1 if i % 2 == 0 else -1]
            got = dict(
                zip([s.name for s, _ in order], bench.loaded_together(order, 32, 5), strict=True)
            )
            ratios.append(got["new"][1] / got["old"][1])
            print(f"round {i}: new {got['new'][0]:.0f}/s {got['new'][1]:.0f} µs, "
                  f"old {got['old'][0]:.0f}/s {got['old'][1]:.0f} µs, ratio {ratios[-1]:.3f}",
                  flush=True)  # fmt: skip
        print(f"CPU per mint, new / old: median {statistics.median(ratios):.3f} "
              f"(rounds {min(ratios):.3f}-{max(ratios):.3f})")  # fmt: skip
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
