"""The controller's cluster state tells its readers exactly which profiles changed."""

from __future__ import annotations

import argparse

import pytest

from agent.api.keys import ProfileKey
from agent.api.node_report import NodeReport, NodeState, Problem
from agent.controller.profile_status import ProfileView
from agent.controller.settings import add_controller_arguments, build_controller_settings
from agent.controller.state import ClusterState, waiting_counts
from agent.runtime.settings import SettingsError

A = ProfileKey("ns", "a")
B = ProfileKey("ns", "b")


def recorded() -> tuple[ClusterState, list[set[ProfileKey] | None]]:
    """A state and what its listener heard."""
    calls: list[set[ProfileKey] | None] = []
    return ClusterState(listeners=(calls.append,)), calls


def test_synced_only_after_every_listing() -> None:
    state = ClusterState()
    state.replace_profiles([])
    state.replace_reports([])
    state.replace_pods([])
    assert not state.synced
    state.replace_nodes([])
    assert state.synced


def test_a_node_report_change_names_only_the_profiles_it_changed() -> None:
    state, calls = recorded()
    state.replace_reports([NodeReport("n1", True, {A: "111", B: "222"}, {})])
    calls.clear()
    state.put_report(NodeReport("n1", True, {A: "111", B: "333"}, {}))
    state.put_report(
        NodeReport("n1", True, {A: "111", B: "333"}, {A: Problem(NodeState.INVALID, "r", "m")})
    )
    state.put_report(
        NodeReport("n1", True, {A: "111", B: "333"}, {A: Problem(NodeState.INVALID, "r", "m")})
    )
    assert calls == [{B}, {A}]


def test_a_new_or_gone_node_changes_every_profile() -> None:
    state, calls = recorded()
    state.put_report(NodeReport("n1", False, {}, {}))
    state.put_report(NodeReport("n1", True, {}, {}))
    state.drop_report("n1")
    state.drop_report("n1")  # already gone: nothing to say
    assert calls == [None, None, None]


def test_an_unchanged_profile_view_is_not_news() -> None:
    state, calls = recorded()
    state.put_profile(ProfileView(A, 1, "x"))
    state.put_profile(ProfileView(A, 1, "x"))
    state.put_profile(ProfileView(A, 2, "y"))
    assert calls == [{A}, {A}]


def test_waiting_counts_per_profile() -> None:
    assert waiting_counts({"u1": frozenset({A}), "u2": frozenset({A, B})}) == {A: 2, B: 1}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_controller_arguments(parser)
    return parser.parse_args(argv)


def test_settings_refuse_a_renew_deadline_beyond_the_lease() -> None:
    with pytest.raises(SettingsError, match="--renew-deadline"):
        build_controller_settings(parse("--renew-deadline", "20"), {})


def test_settings_identity_from_the_pod() -> None:
    settings = build_controller_settings(parse(), {"POD_NAME": "c-1", "POD_NAMESPACE": "ops"})
    assert (settings.identity, settings.lease_namespace) == ("c-1", "ops")
