"""API families: each a folder holding one upstream API's vocabulary (its policy section
and how it is parsed), its enforcement (pure), its upstream shapes per dialect and its
orchestration, over the shared core (identity, limits, budgets, the registry, the edge).

GPT-Live is ``families/live``. A family never imports another (an import contract says
so); the core knows a family only through the policy sections it registers here and the
routes the HTTP layer gives it. The Realtime API's code predates this layout and still
lives in the core's folders (``policy/``, ``flow/``, ``upstream/``).
"""

from __future__ import annotations

from dataclasses import replace

from tokenbroker.families.live.policy import parse_live
from tokenbroker.policy.primitives import Parser
from tokenbroker.policy.vocabulary import VOCABULARIES, Vocabulary

SECTIONS: dict[str, Parser] = {"live": parse_live}  # policy key -> its family's parser


def vocabulary(dialect: str) -> Vocabulary:
    """The dialect's policy vocabulary with every family's section."""
    return replace(VOCABULARIES[dialect], sections=SECTIONS)
