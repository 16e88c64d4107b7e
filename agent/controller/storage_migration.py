"""`seccomp-agent migrate-storage`: rewrite every stored object at the CRDs' storage version, then
record that no older version is stored any more.

Why: the API server keeps each object in etcd in the version it was written as, until something
writes it again. `status.storedVersions` of a CRD lists every version objects may still be stored
in; a version can be removed from the CRD only once it is gone from that list, and the list only
shrinks when someone trims it. So after an upgrade that moved the storage version (v1alpha1 to
v1beta1), each object is read and written back unchanged: the API server encodes the write at the
storage version (a write of identical bytes is skipped by the server, so an object already stored
at the new version costs one request and no write). Then `storedVersions` is trimmed to the
storage version.

It is idempotent: a CRD whose storedVersions already holds only the storage version is left
alone, and a rerun after a failure rewrites again and trims only when every object was written.
It needs rights the controller and the node agent do not have (customresourcedefinitions/status),
so it runs under its own ServiceAccount (deploy/migration/).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, TextIO

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agent.api.model import API_GROUP, NODE_STATUS_PLURAL, PLURAL
from agent.kube.client import REQUEST_TIMEOUT, load_configuration
from agent.kube.pager import list_items

TENANT_POLICY_PLURAL: Final = "seccomptenantpolicies"
PLURALS: Final = (PLURAL, NODE_STATUS_PLURAL, TENANT_POLICY_PLURAL)
# A conflict means someone wrote the object between our read and our write, which already
# re-encoded it; the retries only guard against a storm of writers.
MAX_ATTEMPTS: Final = 5

EXIT_DONE = 0
EXIT_INCOMPLETE = 1


class MigrationError(RuntimeError):
    """The migration cannot go on for one CRD; the message says what to do."""


class StorageApi(Protocol):
    """The calls the migration makes (`KubeStorageApi` is the real one)."""

    def read_crd(self, name: str) -> dict[str, Any] | None: ...

    def list_objects(self, plural: str, version: str) -> list[dict[str, Any]]: ...

    def read_object(
        self, plural: str, version: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None: ...

    def replace_object(
        self, plural: str, version: str, namespace: str | None, body: dict[str, Any]
    ) -> None: ...

    def set_stored_versions(self, name: str, before: list[str], after: list[str]) -> None: ...


class ConflictError(Exception):
    """The object changed since it was read (HTTP 409)."""


class GoneError(Exception):
    """The object was deleted since it was listed (HTTP 404)."""


class RefusedError(Exception):
    """The API server refused the write (validation, admission, rights)."""


@dataclass(frozen=True)
class CrdOutcome:
    crd: str
    storage_version: str
    stored_before: tuple[str, ...]
    stored_after: tuple[str, ...]
    rewritten: int = 0
    deleted_meanwhile: int = 0
    failures: tuple[str, ...] = ()
    skipped: str = ""  # why nothing was done, when nothing was

    @property
    def complete(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        if self.skipped:
            return f"{self.crd}: {self.skipped}"
        lines = [
            f"{self.crd}: rewrote {self.rewritten} object(s) at {self.storage_version}"
            + (f" ({self.deleted_meanwhile} deleted meanwhile)" if self.deleted_meanwhile else "")
        ]
        lines += [f"{self.crd}: not rewritten: {failure}" for failure in self.failures]
        if self.stored_after != self.stored_before:
            lines.append(
                f"{self.crd}: status.storedVersions {list(self.stored_before)} -> "
                f"{list(self.stored_after)}"
            )
        else:
            lines.append(
                f"{self.crd}: status.storedVersions left at {list(self.stored_before)}: fix the "
                "objects above and run migrate-storage again"
            )
        return "\n".join(lines)


def migrate_crd(api: StorageApi, plural: str) -> CrdOutcome:
    """Rewrite every object of one CRD at its storage version, then trim storedVersions."""
    name = f"{plural}.{API_GROUP}"
    crd = api.read_crd(name)
    if crd is None:
        return CrdOutcome(name, "", (), (), skipped="not installed, nothing to migrate")
    storage = [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]
    if len(storage) != 1:
        raise MigrationError(f"{name}: expected one storage version, found {storage}")
    version = storage[0]
    before = tuple((crd.get("status") or {}).get("storedVersions") or ())
    if before == (version,):
        return CrdOutcome(
            name,
            version,
            before,
            before,
            skipped=f"every object is already stored as {version} "
            f"(status.storedVersions is [{version}]): nothing to do",
        )
    rewritten = gone = 0
    failures: list[str] = []
    for item in api.list_objects(plural, version):
        meta = item.get("metadata") or {}
        where = f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else ""
        try:
            _rewrite(api, plural, version, item)
            rewritten += 1
        except GoneError:
            gone += 1
        except (RefusedError, ConflictError) as exc:
            failures.append(f"{where or meta.get('name')}: {exc}")
    if failures:
        return CrdOutcome(name, version, before, before, rewritten, gone, tuple(failures))
    try:
        api.set_stored_versions(name, list(before), [version])
    except (RefusedError, ConflictError) as exc:
        failure = f"status.storedVersions not trimmed: {exc}"
        return CrdOutcome(name, version, before, before, rewritten, gone, (failure,))
    return CrdOutcome(name, version, before, (version,), rewritten, gone)


def _rewrite(api: StorageApi, plural: str, version: str, item: dict[str, Any]) -> None:
    meta = item["metadata"]
    namespace: str | None = meta.get("namespace")
    body = item
    for _ in range(MAX_ATTEMPTS):
        try:
            api.replace_object(plural, version, namespace, body)
            return
        except ConflictError:
            fresh = api.read_object(plural, version, namespace, meta["name"])
            if fresh is None:
                raise GoneError() from None
            body = fresh
    raise ConflictError(f"changed by someone else {MAX_ATTEMPTS} times in a row; run again")


def migrate(api: StorageApi, plurals: Sequence[str], out: TextIO) -> int:
    """Every CRD in turn; prints what was done. Exit 0 when every CRD is migrated."""
    status = EXIT_DONE
    for plural in plurals:
        try:
            outcome = migrate_crd(api, plural)
        except MigrationError as exc:
            print(str(exc), file=out)
            status = EXIT_INCOMPLETE
            continue
        print(outcome.describe(), file=out)
        if not outcome.complete:
            status = EXIT_INCOMPLETE
    return status


class KubeStorageApi:
    """`StorageApi` over the official client; every call with the one request timeout."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._crds = client.ApiextensionsV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)

    def read_crd(self, name: str) -> dict[str, Any] | None:
        response = self._call(
            lambda: self._crds.read_custom_resource_definition(
                name, _request_timeout=REQUEST_TIMEOUT, _preload_content=False
            ),
            missing_ok=True,
        )
        if response is None:
            return None
        crd: dict[str, Any] = json.loads(response.data)
        return crd

    def list_objects(self, plural: str, version: str) -> list[dict[str, Any]]:
        # Cluster-wide list, namespaced kinds included; pages of PAGE_SIZE. The whole listing is
        # kept: it is small (names and specs), and the writes must not run inside a paged read
        # whose continue token could expire while they do.
        return list(list_items(self._custom.list_cluster_custom_object, API_GROUP, version, plural))

    def read_object(
        self, plural: str, version: str, namespace: str | None, name: str
    ) -> dict[str, Any] | None:
        def read() -> Any:
            if namespace:
                return self._custom.get_namespaced_custom_object(
                    API_GROUP, version, namespace, plural, name, _request_timeout=REQUEST_TIMEOUT
                )
            return self._custom.get_cluster_custom_object(
                API_GROUP, version, plural, name, _request_timeout=REQUEST_TIMEOUT
            )

        result: dict[str, Any] | None = self._call(read, missing_ok=True)
        return result

    def replace_object(
        self, plural: str, version: str, namespace: str | None, body: dict[str, Any]
    ) -> None:
        body = {"apiVersion": f"{API_GROUP}/{version}", **body}
        name = body["metadata"]["name"]

        def replace() -> Any:
            if namespace:
                return self._custom.replace_namespaced_custom_object(
                    API_GROUP, version, namespace, plural, name, body,
                    _request_timeout=REQUEST_TIMEOUT,
                )  # fmt: skip
            return self._custom.replace_cluster_custom_object(
                API_GROUP, version, plural, name, body, _request_timeout=REQUEST_TIMEOUT
            )

        if self._call(replace, missing_ok=True) is None:
            raise GoneError()

    def set_stored_versions(self, name: str, before: list[str], after: list[str]) -> None:
        # A JSON patch that first tests the old list: if it changed since it was read (an older
        # CRD applied again meanwhile), the patch fails instead of hiding a stored version.
        patch = [
            {"op": "test", "path": "/status/storedVersions", "value": before},
            {"op": "replace", "path": "/status/storedVersions", "value": after},
        ]
        self._call(
            lambda: self._crds.patch_custom_resource_definition_status(
                name, patch, _request_timeout=REQUEST_TIMEOUT
            ),
            missing_ok=False,
        )

    @staticmethod
    def _call(call: Callable[[], Any], *, missing_ok: bool) -> Any:
        try:
            return call()
        except ApiException as exc:
            if exc.status == 404 and missing_ok:
                return None
            if exc.status == 409:
                raise ConflictError("conflict") from None
            if exc.status in (400, 403, 422):
                raise RefusedError(f"HTTP {exc.status}: {_reason(exc)}") from None
            raise


def _reason(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "").get("message") or exc.reason)
    except (TypeError, ValueError):
        return str(exc.reason)


def run_migration(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The entry point of `seccomp-agent migrate-storage`; prints to ``out``, else stdout.

    stdout is looked up at call time, not bound as a default when the module is imported: a
    default would keep whatever stream was current then (a test's captured one, long closed).
    """
    kubeconfig: Path | None = args.kubeconfig or (
        Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None
    )
    with client.ApiClient(load_configuration(kubeconfig)) as api_client:
        return migrate(KubeStorageApi(api_client), PLURALS, out or sys.stdout)
