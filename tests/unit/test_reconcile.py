"""The pure decision: what to do on disk for one profile."""

from __future__ import annotations

from agent.api.keys import ProfileKey
from agent.api.model import OciSeccomp
from agent.node.catalog import ProfileRecord
from agent.node.reconcile import Keep, Remove, Write, decide
from agent.profiles.render import render

KEY = ProfileKey("team", "web")
GOOD = render(OciSeccomp.model_validate({"defaultAction": "SCMP_ACT_ERRNO"}))


def record(rendered: bool = True, errors: tuple = ()) -> ProfileRecord:  # type: ignore[type-arg]
    return ProfileRecord(KEY, "uid-1", 1, GOOD if rendered else None, errors)


def test_missing_file_is_written() -> None:
    assert decide(record(), None, None) == Write(GOOD.content, GOOD.sha256)


def test_right_bytes_are_kept_and_deciding_again_is_a_no_op() -> None:
    assert decide(record(), GOOD.content, GOOD.sha256) == Keep(GOOD.sha256)


def test_other_bytes_are_replaced() -> None:
    assert decide(record(), b"{}", "x") == Write(GOOD.content, GOOD.sha256)


def test_deleted_profile_is_removed_unless_a_pod_still_uses_it() -> None:
    assert decide(None, GOOD.content, GOOD.sha256) == Remove()
    assert decide(None, GOOD.content, GOOD.sha256, in_use=True) == Keep(GOOD.sha256)
    assert decide(None, None, None) == Keep(None)


def test_invalid_profile_without_a_valid_version_leaves_the_disk_alone() -> None:
    assert decide(record(rendered=False), b"old", "old-sha") == Keep("old-sha")
    assert decide(record(rendered=False), None, None) == Keep(None)
