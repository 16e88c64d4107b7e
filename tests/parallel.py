"""Pytest plugin: how the suite is split between pytest-xdist workers (`make test` runs
``pytest -n 3 --dist loadgroup``).

Each worker is a pytest session of its own, so it starts its own control plane (the ``cluster``
session fixture, ~300 MB): cluster-scoped objects (CRDs, Nodes, SeccompNodeStatus, admission
policies, deploy/, the controller's Lease) are never shared between workers, and the tests of one
worker run one after another as in a serial run. What must run on one worker is a group:

- ``node``: every test on a real node (tests/node/pytest_plugin.py): one node per run;
- a module's node id: the tests that share a module-scoped fixture (deploy/ installed, a
  Prometheus, a runc bundle), so that it is set up once, as in a serial run.

Every other test is scheduled on its own. The tests that need no control plane (the unit tests,
mostly) are handed out first, while no control plane, agent or kubelet competes for the 2 cores:
several of them time a compile worker or an event loop against a deadline. Then the others, in
collection order: tests/e2e, the longest group, first.

Why our own scheduler for ``--dist loadgroup``: xdist's passes the group to the controller by
appending ``@group`` to the test's node id, which pytest >= 9.2 no longer lets a plugin change
(pytest-xdist issue 1386): the tests were silently spread over all workers. Here each worker writes
its groups to a file (the directory is handed to it in ``workerinput``) before it reports its
collection; the scheduler reads them when every worker has reported, before it hands out work.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.node.pytest_plugin import needs_node

if TYPE_CHECKING:
    from xdist.remote import Producer
    from xdist.workermanage import WorkerController

GROUPS_DIR_KEY = "seccomp_sync_groups_dir"
_groups_dir_key = pytest.StashKey[Path]()


def group_of(item: pytest.Item) -> str | None:
    """The group a test must share a worker with (None: any worker)."""
    if needs_node(item):
        return "node"
    if isinstance(item, pytest.Function):
        for name in item.fixturenames:
            for fixture in item._fixtureinfo.name2fixturedefs.get(name, ()):
                if fixture.scope == "module":
                    return item.nodeid.split("::", 1)[0]
    return None


# --- on a worker ---------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, the tests that need no control plane first (a stable sort: the same order on
    every worker, as xdist requires)."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: "cluster" in getattr(item, "fixturenames", ()))


# tryfirst: the file must be complete before xdist's own hook reports the collection.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    workerinput: dict[str, Any] | None = getattr(session.config, "workerinput", None)
    if workerinput is None or GROUPS_DIR_KEY not in workerinput:
        return
    groups = {item.nodeid: group for item in session.items if (group := group_of(item))}
    target = Path(workerinput[GROUPS_DIR_KEY]) / f"{workerinput['workerid']}.json"
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(groups))
    partial.rename(target)


# --- on the controller ---------------------------------------------------------------------


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: WorkerController) -> None:
    config = node.config
    if _groups_dir_key not in config.stash:
        config.stash[_groups_dir_key] = Path(tempfile.mkdtemp(prefix="pytest-groups-"))
    node.workerinput[GROUPS_DIR_KEY] = str(config.stash[_groups_dir_key])


def pytest_unconfigure(config: pytest.Config) -> None:
    groups_dir = config.stash.get(_groups_dir_key, None)
    if groups_dir is not None:
        shutil.rmtree(groups_dir, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """xdist's scheduling by scope, a scope being a group of ours or else a single test."""

        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # first called once every worker reported its collection
                workers = len(self.registered_collections)
                self.groups = read_groups(config.stash[_groups_dir_key], workers)
            return self.groups.get(nodeid, nodeid)

    # Collection order (as sorted above), not xdist's default of the most tests first: that
    # would start the modules of many short tests before tests/e2e, the longest group.
    config.option.loadscopereorder = False
    return GroupScheduling(config, log)


def read_groups(groups_dir: Path, workers: int) -> dict[str, str]:
    """The groups the workers wrote; they collected the same tests (xdist checks), so the same
    groups. A worker that wrote none is a bug here: fail rather than run grouped tests apart."""
    files = sorted(groups_dir.glob("*.json"))
    if len(files) < workers:
        raise RuntimeError(
            f"tests/parallel.py: {len(files)} of {workers} workers wrote their test groups to "
            f"{groups_dir}"
        )
    groups: dict[str, str] = {}
    for path in files:
        groups.update(json.loads(path.read_text()))
    return groups
