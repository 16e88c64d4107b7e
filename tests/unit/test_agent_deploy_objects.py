"""The node tests' teardown removes every cluster-scoped object of deploy/base: one it misses
(an admission policy above all) outlives the test and changes what later tests' pods get."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.node.agent_deploy import CLUSTER_OBJECTS

BASE = Path(__file__).resolve().parents[2] / "deploy" / "base"
# Namespaced kinds (their namespace goes with the installation), and what other tests share.
LEFT_ALONE = {"Namespace", "CustomResourceDefinition", "Kustomization"}


def test_cluster_objects_name_every_cluster_scoped_object_of_deploy_base() -> None:
    found = set()
    for manifest in sorted(BASE.glob("*.yaml")):
        for doc in yaml.safe_load_all(manifest.read_text()):
            if not doc or doc.get("kind") in LEFT_ALONE or "namespace" in doc["metadata"]:
                continue
            found.add(f"{doc['kind'].lower()}/{doc['metadata']['name']}")
    assert found, "no cluster-scoped object found in deploy/base: the test reads nothing"
    assert found - set(CLUSTER_OBJECTS) == set()
