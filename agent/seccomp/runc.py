"""runc's rule for grouping a rule's argument conditions into libseccomp rules: the one copy.

Used by the compile worker and by the cost model (which may not import the worker). Pure, and
imports nothing of the agent: the worker process stays quick to start.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

Condition = TypeVar("Condition")


def condition_sets(
    conditions: Sequence[Condition], indexes: Sequence[Hashable]
) -> list[tuple[Condition, ...]]:
    """The libseccomp rules runc adds, per syscall name, for one OCI rule's conditions.

    `indexes[i]` is the argument `conditions[i]` tests. One rule ANDs them all, unless an index
    repeats: then each is a rule of its own (ORed), as libseccomp refuses two on one argument.
    """
    if len(set(indexes)) < len(indexes):
        return [(condition,) for condition in conditions]
    return [tuple(conditions)]
