"""migrate-storage's decisions over a small fake of the API it calls (the real API server is in
tests/integration/test_storage_migration.py): conflicts, deletions, refusals, reruns."""

from __future__ import annotations

import io
from typing import Any

from agent.controller.storage_migration import (
    EXIT_DONE,
    EXIT_INCOMPLETE,
    ConflictError,
    GoneError,
    RefusedError,
    migrate,
    migrate_crd,
)


class FakeApi:
    def __init__(self, objects: list[dict[str, Any]], stored: list[str]) -> None:
        self.objects = {o["metadata"]["name"]: o for o in objects}
        self.stored = stored
        self.writes: list[tuple[str, str]] = []  # (name, resourceVersion written)
        self.conflicts: dict[str, int] = {}  # name -> conflicts still to answer
        self.refuse: set[str] = set()
        self.deleted_before_write: set[str] = set()

    def read_crd(self, name: str) -> dict[str, Any] | None:
        return {
            "spec": {"versions": [{"name": "v1beta1", "storage": True}, {"name": "v1alpha1"}]},
            "status": {"storedVersions": list(self.stored)},
        }

    def list_objects(self, plural: str, version: str) -> list[dict[str, Any]]:
        return [dict(o) for o in self.objects.values()]

    def read_object(
        self, plural: str, version: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        found = self.objects.get(name)
        return dict(found) if found else None

    def replace_object(
        self, plural: str, version: str, namespace: str | None, body: dict[str, Any]
    ) -> None:
        name = body["metadata"]["name"]
        if name in self.deleted_before_write:
            del self.objects[name]
            self.deleted_before_write.discard(name)
            raise GoneError()
        if name in self.refuse:
            raise RefusedError("HTTP 422: denied by policy")
        if self.conflicts.get(name, 0) > 0:
            self.conflicts[name] -= 1
            # Someone else wrote it meanwhile: a newer resourceVersion.
            current = self.objects[name]
            rv = str(int(current["metadata"]["resourceVersion"]) + 1)
            self.objects[name] = {
                **current,
                "metadata": {**current["metadata"], "resourceVersion": rv},
            }
            raise ConflictError("conflict")
        self.writes.append((name, body["metadata"]["resourceVersion"]))

    def set_stored_versions(self, name: str, before: list[str], after: list[str]) -> None:
        assert before == self.stored
        self.stored = after


def _objects(*names: str) -> list[dict[str, Any]]:
    return [{"metadata": {"name": n, "namespace": "ns", "resourceVersion": "1"}} for n in names]


def test_a_conflict_is_answered_by_reading_again_and_writing_what_was_read() -> None:
    api = FakeApi(_objects("a", "b"), ["v1alpha1", "v1beta1"])
    api.conflicts["a"] = 2
    outcome = migrate_crd(api, "seccompprofiles")
    assert outcome.complete and outcome.rewritten == 2
    assert ("a", "3") in api.writes  # the version read after the second conflict
    assert api.stored == ["v1beta1"]


def test_an_object_deleted_meanwhile_is_counted_not_failed() -> None:
    api = FakeApi(_objects("a", "b"), ["v1alpha1", "v1beta1"])
    api.deleted_before_write.add("b")
    outcome = migrate_crd(api, "seccompprofiles")
    assert (outcome.rewritten, outcome.deleted_meanwhile, outcome.complete) == (1, 1, True)
    assert api.stored == ["v1beta1"]


def test_a_refused_object_leaves_stored_versions_and_is_named() -> None:
    api = FakeApi(_objects("a", "b"), ["v1alpha1", "v1beta1"])
    api.refuse.add("b")
    out = io.StringIO()
    assert migrate(api, ["seccompprofiles"], out) == EXIT_INCOMPLETE
    assert api.stored == ["v1alpha1", "v1beta1"]
    text = out.getvalue()
    assert "not rewritten: ns/b: HTTP 422: denied by policy" in text
    assert "storedVersions left at ['v1alpha1', 'v1beta1']" in text
    # Fixed, then run again: complete.
    api.refuse.clear()
    assert migrate(api, ["seccompprofiles"], io.StringIO()) == EXIT_DONE
    assert api.stored == ["v1beta1"]


def test_endless_conflicts_fail_the_object_not_the_run() -> None:
    api = FakeApi(_objects("a"), ["v1alpha1", "v1beta1"])
    api.conflicts["a"] = 100
    outcome = migrate_crd(api, "seccompprofiles")
    assert not outcome.complete and "5 times in a row" in outcome.failures[0]
    assert api.stored == ["v1alpha1", "v1beta1"]


def test_nothing_is_written_when_only_the_storage_version_is_stored() -> None:
    api = FakeApi(_objects("a"), ["v1beta1"])
    outcome = migrate_crd(api, "seccompprofiles")
    assert api.writes == [] and "nothing to do" in outcome.describe()
