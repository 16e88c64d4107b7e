"""What the controller knows of the cluster, fed by its watches; read by the led work.

Pure data (no I/O, no asyncio): the watches call in on the event loop, the listeners given at
construction hear which profiles changed (None: possibly all of them; an empty set: only the
pods), and `synced` says every listing has arrived, so that nothing is decided from a partial
view.

Only reports whose Node exists count (`counted_reports`): a SeccompNodeStatus left by a deleted
Node, or written by an agent run outside any node, must not hold a pod back or lower READY. The
controller learns of Nodes from a watch of their metadata only (not the status a kubelet
rewrites), since a report can outlive its Node (created before the Node, so without an owner) or
come before it.

The state also keeps the fleet digests (agent.controller.fleet) in step with the profile views,
and judges what a compact report's change touches from them: the profiles that changed between
its old and new digest, not every profile.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from agent.api.keys import ProfileKey
from agent.api.node_report import NodeReport
from agent.controller.fleet import FleetDigests
from agent.controller.gated_pods import GatedPod
from agent.controller.profile_status import ProfileView

Listener = Callable[[set[ProfileKey] | None], None]


@dataclass
class ClusterState:
    profiles: dict[ProfileKey, ProfileView] = field(default_factory=dict)
    reports: dict[str, NodeReport] = field(default_factory=dict)
    pods: dict[str, GatedPod] = field(default_factory=dict)  # uid -> pod
    nodes: set[str] = field(default_factory=set)  # the Node objects that exist, by name
    # Architectures a report names that the profile views are not rendered for yet.
    rendering: set[str] = field(default_factory=set)
    listeners: tuple[Listener, ...] = ()
    fleet: FleetDigests = field(default_factory=FleetDigests)
    # Compact reports whose digest the fleet history does not know (yet: a standby's profile
    # watch can be behind the leader's): each counts once its digest turns up.
    unknown_digests: set[str] = field(default_factory=set)
    # How many compact reports name each (architecture, digest): what a status pass looks up
    # in the fleet history, a handful of digests however many nodes.
    compact_digests: Counter[tuple[str, str]] = field(default_factory=Counter)
    # The reports of nodes that exist, kept as reports and Nodes come and go: every status and
    # gate pass reads it, and filtering every report each time was most of their cost.
    _counted: dict[str, NodeReport] = field(default_factory=dict, init=False)
    profiles_listed: bool = False
    reports_listed: bool = False
    pods_listed: bool = False
    nodes_listed: bool = False

    @property
    def countable(self) -> bool:
        """Every node report can be judged: profiles, reports and Nodes listed, and every
        architecture the reports name rendered."""
        return (
            self.profiles_listed
            and self.reports_listed
            and self.nodes_listed
            and not self.rendering
        )

    @property
    def synced(self) -> bool:
        return self.countable and self.pods_listed

    def counted_reports(self) -> dict[str, NodeReport]:
        """The reports of nodes that exist: the nodes every profile is expected on (a copy:
        status passes read it in a thread)."""
        return dict(self._counted)

    def nodeless_reports(self) -> list[NodeReport]:
        """Reports whose Node does not exist: they count for nothing."""
        return [report for node, report in self.reports.items() if node not in self.nodes]

    def replace_nodes(self, names: Iterable[str]) -> None:
        self.nodes = set(names)
        self.nodes_listed = True
        self._recount()
        self._notify(None)

    def put_node(self, name: str) -> None:
        if name not in self.nodes:
            self.nodes.add(name)
            if name in self.reports:
                self._counted[name] = self.reports[name]
                self._notify(None)  # its report counts from now on: every profile recounts

    def drop_node(self, name: str) -> None:
        if name in self.nodes:
            self.nodes.discard(name)
            if self._counted.pop(name, None) is not None:
                self._notify(None)

    def _recount(self) -> None:
        self._counted = {node: r for node, r in self.reports.items() if node in self.nodes}
        self.compact_digests = Counter(_digest_of(r) for r in self.reports.values() if r.compact)

    def expect_architectures(self, architectures: set[str]) -> None:
        """The views are being rendered for these; nothing is counted until they are."""
        self.rendering |= architectures

    def rendered_architectures(self, architectures: set[str]) -> None:
        if architectures & self.rendering:
            self.rendering -= architectures
            self.fleet.add_architectures(architectures)
            self._notify(None)

    def replace_profiles(self, views: Iterable[ProfileView]) -> None:
        self.profiles = {view.key: view for view in views}
        self.profiles_listed = True
        self.fleet.add_architectures({view.architecture for view in self.profiles.values()})
        self.fleet.replace(self.profiles.values())
        self._known_now()
        self._notify(None)

    def put_profile(self, view: ProfileView) -> None:
        if self.profiles.get(view.key) != view:
            self.profiles[view.key] = view
            self.fleet.add_architectures({view.architecture})
            if self.fleet.update({view.key: view}) and self._known_now():
                self._notify(None)
            else:
                self._notify({view.key})

    def drop_profile(self, key: ProfileKey) -> None:
        if self.profiles.pop(key, None) is not None:
            if self.fleet.update({key: None}) and self._known_now():
                self._notify(None)
            else:
                self._notify({key})

    def replace_reports(self, reports: Iterable[NodeReport]) -> None:
        self.reports = {report.node: report for report in reports}
        self.reports_listed = True
        self._recount()
        self.unknown_digests.clear()
        for report in self.reports.values():
            self._unknown_digest(report)
        self._notify(None)

    def put_report(self, report: NodeReport) -> None:
        previous = self.reports.get(report.node)
        self.reports[report.node] = report
        if report.node in self.nodes:
            self._counted[report.node] = report
        self._count_digest(previous, -1)
        self._count_digest(report, +1)
        self._unknown_digest(report)
        if previous is None or (previous.synced, previous.architecture) != (
            report.synced,
            report.architecture,
        ):
            self._notify(None)  # the set of expected nodes changed: every profile counts it
        elif previous != report:
            self._notify(changed_keys(previous, report, self.fleet))

    def drop_report(self, node: str) -> None:
        previous = self.reports.pop(node, None)
        if previous is not None:
            self._counted.pop(node, None)
            self._count_digest(previous, -1)
            self.unknown_digests.discard(node)
            self._notify(None)

    def _count_digest(self, report: NodeReport | None, by: int) -> None:
        if report is not None and report.compact:
            digest = _digest_of(report)
            self.compact_digests[digest] += by
            if self.compact_digests[digest] <= 0:
                del self.compact_digests[digest]

    def _unknown_digest(self, report: NodeReport) -> None:
        if report.compact and self.fleet.position(report.architecture, report.digest) is None:
            self.unknown_digests.add(report.node)
        else:
            self.unknown_digests.discard(report.node)

    def _known_now(self) -> bool:
        """True when a compact report's digest, unknown so far, is known now: that node holds
        every profile it did not list, so every profile counts it again."""
        known = False
        for node in list(self.unknown_digests):
            report = self.reports.get(node)
            if (
                report is None
                or self.fleet.position(report.architecture, report.digest) is not None
            ):
                self.unknown_digests.discard(node)
                known = known or report is not None
        return known

    def replace_pods(self, pods: Iterable[GatedPod]) -> None:
        self.pods = {pod.uid: pod for pod in pods}
        self.pods_listed = True
        self._notify(set())

    def put_pod(self, pod: GatedPod) -> None:
        self.pods[pod.uid] = pod
        self._notify(set())

    def drop_pod(self, uid: str) -> None:
        if self.pods.pop(uid, None) is not None:
            self._notify(set())

    def _notify(self, keys: set[ProfileKey] | None) -> None:
        for listener in self.listeners:
            listener(keys)


def _digest_of(report: NodeReport) -> tuple[str, str]:
    return report.architecture or "", report.digest or ""


def changed_keys(
    old: NodeReport, new: NodeReport, fleet: FleetDigests | None = None
) -> set[ProfileKey] | None:
    """The profiles whose verdict on this node may differ between two of its reports (None:
    possibly all: the report changed form, or a digest is unknown)."""
    problems = {
        k
        for k in set(old.problems) | set(new.problems)
        if old.problems.get(k) != new.problems.get(k)
    }
    if old.compact != new.compact:
        return None
    if new.compact:
        if old.digest == new.digest:
            return problems
        between = fleet.changed_between(new.architecture, old.digest, new.digest) if fleet else None
        return None if between is None else problems | between
    keys = set(old.installed) | set(new.installed)
    return problems | {k for k in keys if old.installed.get(k) != new.installed.get(k)}


def waiting_counts(waiting: Mapping[str, frozenset[ProfileKey]]) -> dict[ProfileKey, int]:
    """Pods waiting per profile, from pod uid -> the profiles it waits on."""
    counts: dict[ProfileKey, int] = {}
    for keys in waiting.values():
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
    return counts
