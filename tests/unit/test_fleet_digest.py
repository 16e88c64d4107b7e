"""Fleet digests: the arithmetic both sides share, the node's choice of report form, and how the
controller judges a compact report (current digest, an older one, an unknown one)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Sequence

from agent.api.findings import error
from agent.api.fleet_digest import EMPTY, Digest, digest_of, published_digests
from agent.api.keys import ProfileKey
from agent.api.node_report import (
    NodeProfileStatus,
    NodeReport,
    NodeState,
    Problem,
    build_status,
    parse_status,
)
from agent.controller.fleet import FleetDigests
from agent.controller.profile_status import ProfileView, node_verdict, profile_status
from agent.controller.profiles import profile_view
from agent.controller.state import ClusterState, changed_keys
from agent.node.catalog import ProfileCatalog, ProfileRecord
from agent.node.fleet_form import (
    MAX_SETTLE_SECONDS,
    SETTLE_SECONDS,
    FleetForm,
    Form,
    Later,
    PublishedDigests,
    node_report,
)
from agent.node.lanes import ValidationLanes
from agent.node.validator import Validator
from agent.profiles.render import RenderedProfile
from agent.seccomp.compiler import ArchCompileResult

ARCH = "SCMP_ARCH_X86_64"
A, B, C = ProfileKey("ns", "a"), ProfileKey("ns", "b"), ProfileKey("other", "c")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def view(key: ProfileKey, version: str, generation: int = 1) -> ProfileView:
    return ProfileView(key, generation, sha(version), architecture=ARCH)


def record(key: ProfileKey, version: str, valid: bool = True) -> ProfileRecord:
    rendered = RenderedProfile(version.encode(), sha(version))
    errors = () if valid else (error("spec", "Bad", "no"),)
    return ProfileRecord(key, f"uid-{key.name}", 1, rendered, errors)


def compact(
    node: str, digest: str, problems: dict[ProfileKey, Problem] | None = None
) -> NodeReport:
    return NodeReport(node, True, {}, problems or {}, ARCH, digest=digest, compact=True)


def digests(*reports: NodeReport) -> set[tuple[str, str]]:
    """What `ClusterState.compact_digests` holds for these reports."""
    return {(r.architecture or "", r.digest or "") for r in reports if r.compact}


# --- the arithmetic -------------------------------------------------------------------------


def test_adding_replacing_and_removing_a_profile_moves_the_digest_and_back() -> None:
    digest = Digest()
    assert digest.hex == EMPTY
    assert digest.set(A, sha("v1"))
    with_a = digest.hex
    assert digest.set(B, sha("v1"))
    assert not digest.set(B, sha("v1"))  # the same version again: no change
    assert digest.set(A, sha("v2"))
    assert digest.hex == digest_of([(A, sha("v2")), (B, sha("v1"))])
    assert digest.set(A, sha("v1"))
    assert digest.set(B, None)
    assert digest.hex == with_a
    assert digest.set(A, None)
    assert digest.hex == EMPTY


def test_the_digest_does_not_depend_on_order() -> None:
    members = [(ProfileKey("ns", f"p{i}"), sha(f"v{i}")) for i in range(200)]
    shuffled = members[:]
    random.Random(7).shuffle(shuffled)
    one, other = Digest(), Digest()
    for key, value in members:
        one.set(key, value)
    for key, value in shuffled:
        other.set(key, value)
    assert one.hex == other.hex == digest_of(members)


def test_only_the_first_12_hex_digits_count_as_in_the_report() -> None:
    """A node reports sha prefixes; two hashes that share them are one version to both sides."""
    assert digest_of([(A, "abcdef012345" + "0" * 52)]) == digest_of(
        [(A, "abcdef012345" + "f" * 52)]
    )


def test_the_node_and_the_controller_compute_the_same_digest_for_the_same_set() -> None:
    catalog = ProfileCatalog()
    fleet = FleetDigests()
    fleet.add_architectures([ARCH])
    for key, version in [(A, "a1"), (B, "b1"), (C, "c1")]:
        catalog.accept(record(key, version))
        fleet.update({key: view(key, version)})
    catalog.accept(record(B, "b2"))  # replaced on both sides
    fleet.update({B: view(B, "b2", generation=2)})
    catalog.forget(C)
    fleet.update({C: None})
    assert catalog.seen.hex == fleet.published()[ARCH]


def test_what_does_not_render_counts_on_neither_side() -> None:
    catalog = ProfileCatalog()
    catalog.accept(record(A, "a1"))
    catalog.accept(record(B, "b1", valid=False))  # invalid: its kept rendering is not "seen"
    fleet = FleetDigests()
    fleet.add_architectures([ARCH])
    fleet.update({A: view(A, "a1"), B: ProfileView(B, 1, None, architecture=ARCH)})
    assert catalog.seen.hex == fleet.published()[ARCH] == digest_of([(A, sha("a1"))])


def test_published_digests_skip_the_revision_and_malformed_entries() -> None:
    good = "a" * 64
    data = {ARCH: good, "revision": "7", "SCMP_ARCH_AARCH64": "short"}
    assert published_digests(data) == {ARCH: good}
    assert published_digests(None) == {}


# --- the report's two forms ----------------------------------------------------------------


def test_a_compact_report_names_its_digest_and_problems_only_and_clears_the_list() -> None:
    statuses = [
        (A, _installed(sha("a1"))),
        (B, _pending("WriteFailed", "EROFS")),
    ]
    status = build_status("n1", True, statuses, ARCH, "d" * 64, compact=True)
    assert status["installed"] is None  # a merge patch removes an earlier list
    assert status["digest"] == "d" * 64
    assert [p["profile"] for p in status["problems"]] == [str(B)]
    report = parse_status("n1", status)
    assert report.compact and report.digest == "d" * 64 and report.installed == {}
    full = parse_status("n1", build_status("n1", True, statuses, ARCH, "d" * 64))
    assert not full.compact and full.installed == {A: sha("a1")[:12]}


def test_a_problem_list_too_long_to_send_whole_makes_the_full_form() -> None:
    statuses = [(ProfileKey("ns", f"p{i:04}"), _pending("WriteFailed", "x")) for i in range(501)]
    status = build_status("n1", True, statuses, ARCH, "d" * 64, compact=True)
    assert status["problemsTruncated"] == 1
    assert status["installed"] is not None
    assert not parse_status("n1", status).compact


# --- the node's choice of form ---------------------------------------------------------------


def test_a_matching_digest_gives_the_compact_form() -> None:
    published = PublishedDigests()
    published.replace({ARCH: "a" * 64, "revision": "1"})
    assert FleetForm(published, ARCH).decide("a" * 64, now=0.0) is Form.COMPACT


def test_no_published_digest_gives_the_full_form_at_once() -> None:
    published = PublishedDigests()
    published.replace(None)
    assert FleetForm(published, ARCH).decide("a" * 64, now=0.0) is Form.FULL
    published.replace({"SCMP_ARCH_AARCH64": "b" * 64})  # another architecture's only
    assert FleetForm(published, ARCH).decide("a" * 64, now=0.0) is Form.FULL


def test_a_mismatch_waits_for_the_settle_time_then_gives_the_full_form() -> None:
    published = PublishedDigests()
    published.replace({ARCH: "a" * 64})
    form = FleetForm(published, ARCH)
    assert form.decide("b" * 64, now=10.0) == Later(SETTLE_SECONDS)
    assert form.decide("b" * 64, now=12.0) == Later(SETTLE_SECONDS - 2.0)
    assert form.decide("b" * 64, now=10.0 + SETTLE_SECONDS) is Form.FULL
    # The controller catches up: compact again, and the next mismatch starts a new wait.
    published.replace({ARCH: "b" * 64})
    assert form.decide("b" * 64, now=20.0) is Form.COMPACT
    assert isinstance(form.decide("c" * 64, now=21.0), Later)


def test_a_digest_that_keeps_moving_restarts_the_wait_but_not_forever() -> None:
    published = PublishedDigests()
    published.replace({ARCH: "a" * 64})
    form = FleetForm(published, ARCH)
    now = 0.0
    decisions = []
    while now <= MAX_SETTLE_SECONDS:
        decisions.append(form.decide(f"{int(now):064x}", now))
        now += SETTLE_SECONDS / 2
    assert all(isinstance(d, Later) for d in decisions[:-1])
    assert decisions[-1] is Form.FULL


def test_a_node_reports_compact_only_after_its_initial_sync() -> None:
    catalog = ProfileCatalog()
    catalog.accept(record(A, "a1"))
    catalog.mark_installed(A, sha("a1"))
    published = PublishedDigests()
    published.replace({ARCH: catalog.seen.hex})
    form = FleetForm(published, ARCH)
    before = node_report(catalog, form, "n1", lambda: 0.0)
    assert isinstance(before, dict) and before["installed"] == [f"{A}@{sha('a1')[:12]}"]
    catalog.complete = True
    after = node_report(catalog, form, "n1", lambda: 0.0)
    assert isinstance(after, dict) and after["installed"] is None
    assert after["digest"] == catalog.seen.hex and after["problems"] == []


# --- the controller's judgement --------------------------------------------------------------


def test_a_node_at_the_current_digest_holds_everything_but_its_problems() -> None:
    fleet = FleetDigests()
    fleet.add_architectures([ARCH])
    views = {A: view(A, "a1"), B: view(B, "b1")}
    fleet.update(views)
    pending = {B: Problem(NodeState.PENDING, "WriteFailed", "EROFS")}
    report = compact("n1", fleet.published()[ARCH], pending)
    holdings = fleet.holdings(digests(report), views)
    assert node_verdict(views[A], report, holdings).state is NodeState.INSTALLED
    verdict = node_verdict(views[B], report, holdings)
    assert (verdict.state, verdict.reason) == (NodeState.PENDING, "WriteFailed")


def test_a_node_at_an_older_digest_holds_what_did_not_change_since() -> None:
    fleet = FleetDigests()
    fleet.add_architectures([ARCH])
    fleet.update({A: view(A, "a1"), B: view(B, "b1")})
    old = fleet.published()[ARCH]
    views = {A: view(A, "a1"), B: view(B, "b2", 2), C: view(C, "c1")}
    fleet.update({B: views[B]})
    fleet.update({C: views[C]})
    report = compact("n1", old)
    holdings = fleet.holdings(digests(report), views)
    verdicts = {key: node_verdict(v, report, holdings) for key, v in views.items()}
    assert verdicts[A].state is NodeState.INSTALLED
    assert (verdicts[B].state, verdicts[B].reason) == (NodeState.PENDING, "Outdated")
    assert (verdicts[C].state, verdicts[C].reason) == (NodeState.PENDING, "NotYetInstalled")
    status = profile_status(views[B], {"n1": report}, None, "2026-01-01T00:00:00Z", holdings)
    assert status["readyNodes"] == "0/1"
    assert status["failingNodes"][0]["node"] == "n1"


def test_a_digest_the_controller_does_not_know_counts_nothing_until_the_node_reports_again() -> (
    None
):
    fleet = FleetDigests()
    fleet.add_architectures([ARCH])
    views = {A: view(A, "a1")}
    fleet.update(views)
    report = compact("n1", "f" * 64)  # e.g. written for a controller before a restart
    verdict = node_verdict(views[A], report, fleet.holdings(digests(report), views))
    assert (verdict.state, verdict.reason) == (NodeState.PENDING, "Unconfirmed")


def test_a_full_report_is_judged_by_its_list_as_before() -> None:
    fleet = FleetDigests()
    fleet.add_architectures([ARCH])
    views = {A: view(A, "a2", 2)}
    fleet.update(views)
    stale = NodeReport("n1", True, {A: sha("a1")[:12]}, {}, ARCH, digest="0" * 64)
    fresh = NodeReport("n2", True, {A: sha("a2")[:12]}, {}, ARCH)
    holdings = fleet.holdings(digests(stale, fresh), views)
    assert node_verdict(views[A], stale, holdings).reason == "Outdated"
    assert node_verdict(views[A], fresh, holdings).state is NodeState.INSTALLED


def test_the_history_is_bounded() -> None:
    fleet = FleetDigests()
    fleet.add_architectures([ARCH])
    fleet.update({A: view(A, "v0")})
    first = fleet.published()[ARCH]
    for i in range(1, 300):
        fleet.update({A: view(A, f"v{i}", i)})
    assert fleet.position(ARCH, first) is None
    assert fleet.position(ARCH, fleet.published()[ARCH]) is not None


def test_a_compact_report_moving_on_names_only_the_profiles_changed_in_between() -> None:
    state = ClusterState()
    state.replace_profiles([view(A, "a1"), view(B, "b1")])
    old = state.fleet.published()[ARCH]
    state.put_profile(view(B, "b2", 2))
    new = state.fleet.published()[ARCH]
    assert changed_keys(compact("n1", old), compact("n1", new), state.fleet) == {B}
    assert changed_keys(compact("n1", "e" * 64), compact("n1", new), state.fleet) is None
    full = NodeReport("n1", True, {A: "1"}, {}, ARCH)
    assert changed_keys(full, compact("n1", new), state.fleet) is None


def test_a_compact_report_whose_digest_turns_up_later_counts_then() -> None:
    """A standby's profile watch can be behind the leader's: the node matched a digest this
    controller computes only a moment later; every profile counts the node again then."""
    calls: list[set[ProfileKey] | None] = []
    state = ClusterState(listeners=(calls.append,))
    state.replace_profiles([view(A, "a1")])
    ahead = digest_of([(A, sha("a1")), (B, sha("b1"))])
    state.put_report(compact("n1", ahead))
    assert state.unknown_digests == {"n1"}
    calls.clear()
    state.put_profile(view(B, "b1"))
    assert calls == [None]
    assert state.unknown_digests == set()


def _installed(value: str) -> NodeProfileStatus:
    return NodeProfileStatus(NodeState.INSTALLED, value)


def _pending(reason: str, message: str) -> NodeProfileStatus:
    return NodeProfileStatus(NodeState.PENDING, None, reason, message)


def test_a_profile_only_this_nodes_compile_refuses_counts_as_seen_at_the_controllers_version() -> (
    None
):
    """The controller does not compile: it counts the version in the fleet digest, so the node
    must too (and report the profile Invalid), or one such profile would keep every node on
    full reports."""
    body = {
        "apiVersion": "seccompsync.io/v1beta1",
        "kind": "SeccompProfile",
        "metadata": {"name": "a", "namespace": "ns", "uid": "u1", "generation": 1},
        "spec": {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
        },
    }

    def refuse(document: object, architectures: Sequence[str]) -> list[ArchCompileResult]:
        return [ArchCompileResult(arch, None, "libseccomp says no") for arch in architectures]

    async def validate() -> ProfileRecord:
        catalog = ProfileCatalog()
        validator = Validator(catalog, [ARCH], refuse, ValidationLanes())
        return catalog.accept(await validator.validate(A, body))

    node = asyncio.run(validate())
    assert node.errors and node.rendered is None
    controller = profile_view(body, architecture=ARCH)
    assert node.fleet_sha == controller.expected_sha is not None
    catalog = ProfileCatalog()
    catalog.accept(node)
    fleet = FleetDigests()
    fleet.add_architectures([ARCH])
    fleet.update({A: controller})
    assert catalog.seen.hex == fleet.published()[ARCH]
    assert [key for key, status in catalog.statuses() if status.state is NodeState.INVALID] == [A]


def test_the_state_keeps_counted_reports_and_compact_digests_as_reports_and_nodes_change() -> None:
    state = ClusterState()
    state.replace_profiles([view(A, "a1")])
    digest = state.fleet.published()[ARCH]
    state.replace_nodes(["n1"])
    state.replace_reports([compact("n1", digest), compact("n2", digest)])
    assert set(state.counted_reports()) == {"n1"}  # n2 has no Node
    assert state.compact_digests == {(ARCH, digest): 2}
    state.put_node("n2")
    state.put_report(NodeReport("n1", True, {A: sha("a1")[:12]}, {}, ARCH))  # full now
    assert state.counted_reports()["n1"].compact is False
    assert state.compact_digests == {(ARCH, digest): 1}
    state.drop_node("n1")
    state.drop_report("n2")
    assert state.counted_reports() == {} and not state.compact_digests
