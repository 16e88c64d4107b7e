"""`python -m bench` (and `make bench`): every benchmark, one after the other, with defaults."""

from __future__ import annotations

import sys

from bench import store_bench, tenant_policy_bench, validate_bench


def main() -> int:
    print("== libseccomp compile (bench.validate_bench)")
    validate_bench.main([])
    print("\n== profile store (bench.store_bench)")
    store_bench.main([])
    print("\n== tenant policy check (bench.tenant_policy_bench)")
    tenant_policy_bench.main([])
    return 0


if __name__ == "__main__":
    sys.exit(main())
