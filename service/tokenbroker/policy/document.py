"""A policy file's YAML read within bounds: nesting depth and node count, aliases counted.

PyYAML composes a document recursively, so one nested a few hundred levels deep raises
RecursionError, and its aliases are shared objects, so a "billion laughs" document is
small in memory until something walks it. Both are refused with a PolicyError before
anything is built: depth is checked as nodes are composed, and the node count is the
document as it reads with every alias expanded (computed once per node, so checking it
costs as much as the document is long, not as large as it expands).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from tokenbroker.policy.model import PolicyError

MAX_DEPTH = 32  # a real policy file nests 6 or 7 levels
MAX_NODES = 200_000  # scalars, lists and maps, every alias expanded
MAX_CHARS = 4 * 1024 * 1024


class _TooDeep(Exception):
    pass


class _BoundedLoader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: Node) -> int:
    """Nodes in the document with every alias expanded, without recursion; stops counting
    past MAX_NODES. A node reached twice (an alias) counts its whole subtree again."""
    sizes: dict[int, int] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        kids = _children(node)
        if children_done or not kids:
            total = 1 + sum(sizes[id(kid)] for kid in kids)
            sizes[id(node)] = min(total, MAX_NODES + 1)
            continue
        stack.append((node, True))
        stack.extend((kid, False) for kid in kids if id(kid) not in sizes)
    return sizes[id(root)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def load_policy_yaml(text: str) -> Any:
    """The YAML document in ``text``; PolicyError if it is not YAML or is past a bound."""
    if len(text) > MAX_CHARS:
        raise PolicyError([f"(yaml): the document is longer than {MAX_CHARS} characters"])
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        if _expanded_size(root) > MAX_NODES:
            raise PolicyError(
                [f"(yaml): the document has more than {MAX_NODES} values (aliases expanded)"]
            )
        return loader.construct_document(root)
    except _TooDeep:
        raise PolicyError([f"(yaml): the document nests deeper than {MAX_DEPTH} levels"]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([f"(yaml): {exc}"]) from None
    finally:
        loader.dispose()
