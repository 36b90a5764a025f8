"""API families: each a folder holding one upstream API's vocabulary (its section of a
policy and how it is parsed), its enforcement (pure), its upstream shapes per dialect, its
events and its flows, over the shared core (identity, limits, budgets, the registry, the
watcher lifecycle, the edge).

- ``families/realtime``: the Realtime API (client secrets, live calls);
- ``families/live``: GPT-Live (sessions the broker creates as the trusted backend).

A family never imports another (an import contract says so); the core knows a family
only through what it registers: its policy section here, its watch factory and ender
with the live calls, its flows with the runtime (wiring.py). A third family is one more
folder, plus a line here, its wiring in wiring.py, and (for sessions created over HTTP at
``/v1/{name}/sessions``) its name in http/sessions.py.
"""

from __future__ import annotations

from tokenbroker.families.live.policy import SECTION as LIVE
from tokenbroker.families.realtime.vocabulary import section as realtime
from tokenbroker.policy.vocabulary import Vocabulary


def vocabulary(dialect: str) -> Vocabulary:
    """The dialect's policy vocabulary: every family's section."""
    return Vocabulary(dialect, (realtime(dialect), LIVE))
