"""`python -m bench` (and `make bench`): every benchmark, one after the other, with defaults."""

from __future__ import annotations

import sys

from bench import (
    authoring_bench,
    compile_cost_bench,
    fleet_bench,
    noisy_neighbour_bench,
    store_bench,
    tenant_policy_bench,
    validate_bench,
)


def main() -> int:
    print("== libseccomp compile (bench.validate_bench)")
    validate_bench.main([])
    print("\n== compile cost model vs. libseccomp (bench.compile_cost_bench)")
    compile_cost_bench.main([])
    print("\n== noisy neighbours (bench.noisy_neighbour_bench)")
    noisy_neighbour_bench.main([])
    print("\n== profile store (bench.store_bench)")
    store_bench.main([])
    print("\n== tenant policy check (bench.tenant_policy_bench)")
    tenant_policy_bench.main([])
    print("\n== test/record overhead, composing on a base (bench.authoring_bench)")
    authoring_bench.main(["--runs", "3"])
    # A quick size (about two minutes); the full series (an hour) is in docs/performance.md.
    print("\n== fleet: simulated nodes, the real controller (bench.fleet_bench, quick size)")
    fleet_bench.main(["--nodes", "50,100", "--profiles", "100", "--pods", "200"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
