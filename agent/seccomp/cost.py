"""Estimate what compiling a profile with libseccomp will cost, from its shape alone.

Pure: no I/O, no libseccomp. The estimate is used twice: validation refuses, before compiling,
a profile that would hold a worker for seconds (a finding a user can act on, cached like any
other verdict), and the compiler and the agent send cheap profiles to a lane of their own so they
never queue behind expensive ones.

What drives the cost (measured with `python -m bench.compile_cost_bench`, libseccomp 2.5.4):
libseccomp keeps, per syscall, a decision tree over the argument conditions of its rules.
- Equality tests (`SCMP_CMP_EQ`, `SCMP_CMP_MASKED_EQ`) on the same arguments exclude each other:
  the tree grows with the number of conditions and building it is quadratic in them (512 rules
  x 6 arguments on one syscall: about 0.5 s). Rules that test different arguments cost no more.
- Range tests (`NE`, `LT`, `LE`, `GE`, `GT`) overlap: libseccomp copies every rule into every
  branch it may share, and the tree is the product over the arguments of (distinct tests + 1).
  Compile time grows with about the fourth power of that: 12 rules x 3 `GT` arguments take
  2.6 s, 64 rules x 2 `LT` arguments more than 8 s, 4 rules x 6 `NE` arguments too.
- Across the whole filter, adding rules is quadratic in their number (a rule naming 300
  syscalls, repeated 128 times: 7 s, though libseccomp keeps one copy), and so is building the
  same conditions for many syscalls (32 rules x 6 arguments, each naming 300 syscalls: 4 s).
Each target architecture is a filter of its own, so the cost is per architecture.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from agent.api.findings import Finding, error
from agent.seccomp.runc import condition_sets


class Lane(StrEnum):
    """Which compile worker a profile goes to."""

    CHEAP = "cheap"
    EXPENSIVE = "expensive"


# Calibrated on the development machine (see the module docstring); each is an upper envelope
# of the measurements rather than a fit, so the estimate errs on the expensive side.
SECONDS_PER_PROFILE: Final = 2e-4  # one round trip to the worker and an empty filter
SECONDS_PER_RULE: Final = 6e-6  # per (syscall name x condition set) handed to libseccomp
SECONDS_PER_CONDITION_SQUARED: Final = 8e-8  # equality trees: quadratic in their conditions
SECONDS_PER_NODE_TO_THE_FOURTH: Final = 2e-13  # overlapping trees: (product of tests)^4
SECONDS_PER_PROFILE_RULE_SQUARED: Final = 5e-9  # all rules of all syscalls
SECONDS_PER_PROFILE_CONDITION_SQUARED: Final = 1.2e-9  # all conditions of all syscalls
_NODE_CAP: Final = 10**9  # beyond this the estimate is "forever" anyway; keeps floats finite

# Refuse what would take longer than this here: a tenth of the compiler's 10 s timeout, so a node
# several times slower than the development machine still finishes well inside it.
COMPILE_BUDGET_SECONDS: Final = 1.0
# Real-world profiles (Docker's, Podman's, SPO's) estimate at 0.4-4 ms per architecture.
CHEAP_LANE_BELOW_SECONDS: Final = 0.05


@dataclass(frozen=True)
class SyscallCost:
    """The estimated cost of one syscall's rules, for one architecture."""

    name: str
    rules: int  # libseccomp rules: condition sets, after runc splits repeated argument indexes
    conditions: int
    arguments: int  # distinct argument indexes tested
    tree_nodes: int  # estimated size of libseccomp's decision tree
    overlapping: bool  # range tests in two or more rules: the tree multiplies
    first_rule: int  # index in `syscalls` of the first rule for this syscall
    seconds: float


@dataclass(frozen=True)
class CompileCost:
    """The estimated cost of compiling a profile for some architectures."""

    seconds: float  # all architectures together
    architectures: int
    heaviest: SyscallCost | None  # the syscall whose rules cost the most
    conditions: int = 0  # argument conditions over all syscalls (per architecture)
    conditional_syscalls: int = 0  # syscalls with at least one condition
    rules: int = 0  # libseccomp rules over all syscalls: (name x condition set) pairs
    syscalls: int = 0

    @property
    def lane(self) -> Lane:
        return Lane.CHEAP if self.seconds < CHEAP_LANE_BELOW_SECONDS else Lane.EXPENSIVE

    @property
    def over_budget(self) -> bool:
        return self.seconds > COMPILE_BUDGET_SECONDS


def estimate(profile: Any, architectures: int) -> CompileCost:
    """The cost of compiling `profile` (an OCI seccomp object) for N architectures.

    Tolerates any shape, raw or validated: what is not a well-formed rule costs nothing here
    (validation reports it).
    """
    architectures = max(architectures, 1)
    groups = _condition_sets_by_syscall(profile)
    costs = [_syscall_cost(name, first, sets) for name, (first, sets) in groups.items()]
    conditions = sum(c.conditions for c in costs)
    rules = sum(c.rules for c in costs)
    per_arch = (
        SECONDS_PER_PROFILE
        + sum(c.seconds for c in costs)
        + SECONDS_PER_PROFILE_RULE_SQUARED * float(rules) ** 2
        + SECONDS_PER_PROFILE_CONDITION_SQUARED * float(conditions) ** 2
    )
    heaviest = max(costs, key=lambda c: c.seconds, default=None)
    return CompileCost(
        per_arch * architectures,
        architectures,
        heaviest,
        conditions,
        sum(1 for c in costs if c.conditions),
        rules,
        len(costs),
    )


def budget_findings(cost: CompileCost, prefix: str = "spec.") -> list[Finding]:
    """An error naming the costliest syscall when the profile would take too long to compile."""
    if not cost.over_budget:
        return []
    heaviest = cost.heaviest
    archs = f"{cost.architectures} architecture{'s' if cost.architectures != 1 else ''}"
    head = (
        f"libseccomp would need an estimated {_duration(cost.seconds)} to compile this profile "
        f"for {archs}"
    )
    budget = f"over the compile budget of {COMPILE_BUDGET_SECONDS:g} s per profile"
    if heaviest is None or heaviest.seconds * cost.architectures < cost.seconds / 2:
        # No single syscall explains it: the cost is spread over many syscalls.
        message = (
            f"{head}, {budget}: {cost.rules:,} libseccomp rules (each name of each rule, once "
            f"per argument alternative) over {cost.syscalls:,} syscalls, with "
            f"{cost.conditions:,} argument conditions. List each syscall once (one rule can "
            "name many), give argument conditions to fewer syscalls (a rule's conditions apply "
            "to every name it lists), or target fewer architectures"
        )
        return [error(prefix + "syscalls", "CompileBudgetExceeded", message)]
    kind = (
        "range comparisons, which overlap and which libseccomp copies into every branch"
        if heaviest.overlapping
        else "equality tests"
    )
    message = (
        f"{head}, {budget}: `{heaviest.name}` has {heaviest.rules:,} rules with "
        f"{heaviest.conditions:,} argument "
        f"conditions on {heaviest.arguments} argument{'s' if heaviest.arguments != 1 else ''}, "
        f"{kind} (a decision tree of about {_count(heaviest.tree_nodes)} nodes). "
        + _advice(heaviest)
    )
    field = f"{prefix}syscalls[{heaviest.first_rule}]"
    return [error(field, "CompileBudgetExceeded", message)]


def _advice(cost: SyscallCost) -> str:
    if cost.overlapping:
        return (
            "Use SCMP_CMP_EQ or SCMP_CMP_MASKED_EQ instead of range comparisons where you can, "
            "or use fewer rules with fewer range conditions each for this syscall"
        )
    return "Split the alternatives over fewer rules, or condition fewer arguments per rule"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return "over an hour"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.1f} s"


def _count(nodes: int) -> str:
    return f"more than {_NODE_CAP:,}" if nodes >= _NODE_CAP else f"{nodes:,}"


_Condition = tuple[object, ...]
_ConditionSet = tuple[_Condition, ...]


def _named_rules(profile: Any) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """The rules with a list of names, and their index in `syscalls`: the rest cost nothing."""
    rules = profile.get("syscalls") if isinstance(profile, Mapping) else None
    if isinstance(rules, list):
        for index, rule in enumerate(rules):
            if isinstance(rule, Mapping) and isinstance(rule.get("names"), list):
                yield index, rule


def _condition_sets_by_syscall(profile: Any) -> dict[str, tuple[int, list[_ConditionSet]]]:
    """Per syscall name: the index of its first rule and the condition set of each rule."""
    groups: dict[str, tuple[int, list[_ConditionSet]]] = {}
    if not isinstance(profile, Mapping):
        return groups
    default = (profile.get("defaultAction"), profile.get("defaultErrnoRet"))
    for index, rule in _named_rules(profile):
        if (rule.get("action"), rule.get("errnoRet")) == default:
            continue  # the compiler skips rules with the default action, as runtimes do
        alternatives = _runc_condition_sets(rule.get("args"))
        for name in rule["names"]:
            if isinstance(name, str):
                groups.setdefault(name, (index, []))[1].extend(alternatives)
    return groups


def _runc_condition_sets(args: Any) -> list[_ConditionSet]:
    """The libseccomp rules runc adds for one OCI rule's `args` (one per name)."""
    if not isinstance(args, list):
        return [()]
    conditions = [_condition(arg) for arg in args if isinstance(arg, Mapping)]
    return condition_sets(conditions, [condition[0] for condition in conditions])


def _condition(arg: Mapping[str, Any]) -> _Condition:
    condition = (arg.get("index"), arg.get("op"), arg.get("value", 0), arg.get("valueTwo", 0))
    try:
        hash(condition)
    except TypeError:
        # Untrusted JSON may hold lists here; only equality matters, and repr keeps it.
        return tuple(repr(part) for part in condition)
    return condition


def _syscall_cost(name: str, first_rule: int, sets: Sequence[_ConditionSet]) -> SyscallCost:
    conditions = sum(len(s) for s in sets)
    tests_by_argument: dict[object, set[_Condition]] = {}
    for condition in (c for s in sets for c in s):
        tests_by_argument.setdefault(condition[0], set()).add(condition)
    overlapping = _overlapping(sets)
    nodes = conditions
    tree_seconds = SECONDS_PER_CONDITION_SQUARED * float(conditions) ** 2
    if overlapping:
        nodes = max(nodes, _product(len(tests) + 1 for tests in tests_by_argument.values()))
        tree_seconds = max(tree_seconds, SECONDS_PER_NODE_TO_THE_FOURTH * float(nodes) ** 4)
    return SyscallCost(
        name=name,
        rules=len(sets),
        conditions=conditions,
        arguments=len(tests_by_argument),
        tree_nodes=nodes,
        overlapping=overlapping,
        first_rule=first_rule,
        seconds=SECONDS_PER_RULE * len(sets) + tree_seconds,
    )


def _overlapping(sets: Sequence[_ConditionSet]) -> bool:
    """Whether libseccomp must copy rules into each other's branches (see the module docstring)."""
    ranged = [s for s in sets if any(condition[1] not in _EQUALITY_OPERATORS for condition in s)]
    return len(ranged) >= 2


_EQUALITY_OPERATORS: Final = frozenset({"SCMP_CMP_EQ", "SCMP_CMP_MASKED_EQ"})


def _product(factors: Iterable[int]) -> int:
    result = 1
    for factor in factors:
        result = min(result * factor, _NODE_CAP)
    return result


def lane_for(profile: Any, architectures: int) -> Lane:
    """The compile lane for a profile: `estimate(...).lane`, in O(rules) for big profiles.

    The agent decides on its event loop, where walking every name of 512 rules x 1,024 names
    would stall everything else: a profile with that many (name x alternative) pairs is expensive
    by the model's rule term alone, so the walk is skipped.
    """
    if _rule_pairs_upper_bound(profile) > _EXPENSIVE_BY_RULES_ALONE:
        return Lane.EXPENSIVE
    return estimate(profile, architectures).lane


def shape_size(profile: Any) -> int:
    """An upper bound of the (syscall name x argument condition) pairs, in O(rules).

    What `estimate` walks; tells the caller whether estimating is worth a thread of its own.
    """
    size = 0
    for _, rule in _named_rules(profile):
        args = rule.get("args")
        size += len(rule["names"]) * max(1, len(args) if isinstance(args, list) else 0)
    return size


# SECONDS_PER_PROFILE_RULE_SQUARED * 3,200^2 is over CHEAP_LANE_BELOW_SECONDS on its own.
_EXPENSIVE_BY_RULES_ALONE: Final = 3_200


def _rule_pairs_upper_bound(profile: Any) -> int:
    return sum(
        len(rule["names"]) * len(_runc_condition_sets(rule.get("args")))
        for _, rule in _named_rules(profile)
    )
