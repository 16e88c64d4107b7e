"""runc's rule for grouping a rule's argument conditions into libseccomp rules: the one copy.

The compile worker builds filters by it, and the cost model (which must not reach for the
worker) estimates by it. Pure and free of imports from the agent, so the worker process stays
quick to start.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

Condition = TypeVar("Condition")


def condition_sets(
    conditions: Sequence[Condition], indexes: Sequence[Hashable]
) -> list[tuple[Condition, ...]]:
    """The libseccomp rules runc adds, per syscall name, for one OCI rule's conditions.

    `indexes[i]` is the argument index `conditions[i]` tests. All conditions go into one rule
    (ANDed), unless an argument index repeats: then each condition is a rule of its own (ORed),
    as libseccomp refuses two conditions on one argument with EINVAL. No conditions: one rule.
    """
    if len(set(indexes)) < len(indexes):
        return [(condition,) for condition in conditions]
    return [tuple(conditions)]
