"""What the tenant guardrails cost: the pure Python check, and admission by the API server.

Run from the repository root:
  python -m bench.tenant_policy_bench                       # the Python check only
  python -m bench.tenant_policy_bench --cluster-dir DIR     # plus admission on the control plane

Profiles: "runtime-default" is an allowlist of the 380 names the strict rule allows (about the
size of a real profile); "largest" is the largest profile the API server stores (512 rules of
500 names, 1.5 MiB). Admission is a server-side dry run (`dryRun=All`: every admission step, no
etcd write), in a namespace that no policy selects, and under the strict policy with 1 and with
10 policies in the cluster (the API server evaluates every policy object for every request).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.api.model import API_GROUP, API_VERSION, PLURAL, OciSeccomp
from agent.profiles.tenancy.policy import parse_policy, profile_violations
from agent.profiles.tenancy.runtime_default import runtime_default_allowed
from tests.tenancy.cases import RESTRICTED, policy_object

REPO = Path(__file__).resolve().parents[1]
TENANT_POLICY = REPO / "deploy" / "base" / "tenant-policy.yaml"


def runtime_default_spec() -> dict[str, Any]:
    names = sorted(runtime_default_allowed())
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}],
    }


def largest_spec() -> dict[str, Any]:
    rules = [{"names": ["brk"] * 500, "action": "SCMP_ACT_ALLOW"} for _ in range(512)]
    return {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules}


def seconds_each(count: int, call: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def median_ms(samples: Sequence[float]) -> float:
    return round(sorted(samples)[len(samples) // 2] * 1000, 3)


def python_rows() -> list[dict[str, Any]]:
    policy = parse_policy(policy_object({}))
    rows = []
    for label, spec, count in [
        ("runtime-default", runtime_default_spec(), 2000),
        ("largest", largest_spec(), 5),
    ]:
        profile = OciSeccomp.model_validate(spec)
        assert profile_violations(policy, profile) == []
        rows.append(
            {
                "check": "python",
                "profile": label,
                "median_ms": median_ms(
                    seconds_each(count, lambda p=profile: profile_violations(policy, p))
                ),
            }
        )
    return rows


def admission_rows(cluster_dir: Path) -> list[dict[str, Any]]:
    from kubernetes import client

    from bench.cluster import api, control_plane, new_namespace

    rows = []
    with control_plane(cluster_dir) as cluster:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(TENANT_POLICY))
        custom = client.CustomObjectsApi(api(cluster))
        free = new_namespace(cluster, "bench-free")
        strict = new_namespace(cluster, "bench-strict")
        cluster.kubectl(
            "label",
            "namespace",
            strict,
            *(f"{k}={v}" for k, v in RESTRICTED.items()),
            "bench=" + strict,
        )
        names = []
        try:

            def add_policy(extra: dict[str, Any]) -> None:
                policy = policy_object({}, name=f"bench-{uuid.uuid4().hex[:6]}")
                policy["spec"]["namespaceSelector"]["matchLabels"].update(extra)
                cluster.kubectl("apply", "-f", "-", input=json.dumps(policy))
                names.append(policy["metadata"]["name"])
                time.sleep(2)  # the API server's policy cache fills from a watch

            def dry_run(namespace: str, spec: dict[str, Any]) -> None:
                body = {
                    "apiVersion": f"{API_GROUP}/{API_VERSION}",
                    "kind": "SeccompProfile",
                    "metadata": {"generateName": "bench-", "namespace": namespace},
                    "spec": spec,
                }
                custom.create_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    PLURAL,
                    body,
                    dry_run="All",
                    _request_timeout=120,
                )

            add_policy({"bench": strict})
            for policies in (1, 10):
                while len(names) < policies:
                    add_policy({"bench": f"nothing-{len(names)}"})
                for label, spec, count in [
                    ("runtime-default", runtime_default_spec(), 50),
                    ("largest", largest_spec(), 3),
                ]:
                    for where, namespace in [
                        ("no policy selects it", free),
                        ("strict policy", strict),
                    ]:
                        samples = seconds_each(count, lambda n=namespace, s=spec: dry_run(n, s))
                        rows.append(
                            {
                                "check": f"admission, {policies} policies",
                                "profile": label,
                                "namespace": where,
                                "median_ms": median_ms(samples),
                            }
                        )
        finally:
            for name in names:
                cluster.kubectl("delete", "seccomptenantpolicy", name, check=False)
            cluster.kubectl("delete", "namespace", free, strict, "--wait=false", check=False)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cluster-dir", type=Path, help="a running control plane's state dir")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = python_rows()
    if args.cluster_dir is not None:
        rows += admission_rows(args.cluster_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            where = f", {row['namespace']}" if "namespace" in row else ""
            print(
                f"{row['check']:<24} {row['profile']:<16}{where:<24} {row['median_ms']:>10.3f} ms"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
