"""The compiler, against the real libseccomp in a real worker process (crashes included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.seccomp.compiler import ArchCompileResult, Compiler, TransientCompileError
from agent.seccomp.cost import Lane, estimate
from agent.validation.validate import validate_spec
from bench._docker_profile import moby_default_oci
from tests.unit.hooked_compile_worker import HOOKED_WORKER_COMMAND, TEST_HOOK_KEY, worker_pids

X86_64 = "SCMP_ARCH_X86_64"
X86 = "SCMP_ARCH_X86"
X32 = "SCMP_ARCH_X32"


@pytest.fixture(scope="module")
def compiler() -> Iterator[Compiler]:
    """One worker for the tests that do not break it."""
    with Compiler() as shared:
        yield shared


@pytest.fixture
def hooked_compiler() -> Iterator[Compiler]:
    """A compiler whose worker (the real one, wrapped) honours the crash/hang test hooks."""
    # 3 s: a fresh worker must start and compile within it on a loaded machine (1 s was not
    # always enough under a parallel test run); a hang still ends in seconds, not minutes.
    with Compiler(timeout_seconds=3.0, worker_command=HOOKED_WORKER_COMMAND) as hooked:
        yield hooked


def profile(*rules: dict[str, Any], default: str = "SCMP_ACT_ERRNO") -> dict[str, Any]:
    return {"defaultAction": default, "syscalls": list(rules)}


def allow(*names: str, **extra: Any) -> dict[str, Any]:
    return {"names": list(names), "action": "SCMP_ACT_ALLOW", **extra}


def arg(index: int, value: int, op: str = "SCMP_CMP_EQ") -> dict[str, Any]:
    return {"index": index, "value": value, "op": op}


def instructions(compiler: Compiler, oci: dict[str, Any], arch: str = X86_64) -> int:
    [result] = compiler.compile(oci, [arch])
    assert result.error is None, result
    assert result.instructions is not None
    return result.instructions


# Real profiles


def test_docker_default_for_x86_64_is_about_340_instructions(compiler: Compiler) -> None:
    [result] = compiler.compile(moby_default_oci(), [X86_64])
    assert result.error is None and result.rule_path is None
    # 337 with libseccomp 2.5.4, the figure runc's filter has for a default Docker container.
    assert result.instructions is not None and 300 <= result.instructions <= 350


def test_docker_default_for_x86_64_x86_and_x32_counts_each(compiler: Compiler) -> None:
    results = compiler.compile(moby_default_oci(), [X86_64, X86, X32])
    assert [r.architecture for r in results] == [X86_64, X86, X32]
    counts = [r.instructions for r in results]
    assert all(r.error is None for r in results), results
    assert all(c is not None and 250 <= c <= 450 for c in counts), counts
    # Each architecture is its own filter: x86 has extra syscalls (socketcall, the 32-bit
    # variants) and so more instructions than x86_64.
    assert counts[1] is not None and counts[0] is not None and counts[1] > counts[0]
    assert 900 <= sum(c for c in counts if c is not None) <= 1100


def test_a_small_profile_costs_one_instruction_per_allowed_syscall(compiler: Compiler) -> None:
    two = instructions(compiler, profile(allow("read", "write")))
    three = instructions(compiler, profile(allow("read", "write", "exit_group")))
    assert two < 15
    assert three == two + 1


def test_same_profile_compiles_to_the_same_count_every_time(compiler: Compiler) -> None:
    oci = moby_default_oci()
    assert len({instructions(compiler, oci) for _ in range(5)}) == 1


# runc's way of building the filter


def test_names_libseccomp_does_not_know_are_skipped(compiler: Compiler) -> None:
    # runc skips `opne` (a typo) and `mseal` (too new for libseccomp 2.5.4) without an error.
    plain = instructions(compiler, profile(allow("read")))
    assert instructions(compiler, profile(allow("read", "opne"))) == plain
    assert instructions(compiler, profile(allow("opne"))) < plain


def test_a_rule_with_the_default_action_is_skipped(compiler: Compiler) -> None:
    # libseccomp itself would refuse it (EACCES); runtimes leave it out.
    empty = instructions(compiler, profile(default="SCMP_ACT_ALLOW"))
    assert instructions(compiler, profile(allow("read"), default="SCMP_ACT_ALLOW")) == empty
    errno_rule = {"names": ["read"], "action": "SCMP_ACT_ERRNO"}  # EPERM, like the default
    assert instructions(compiler, profile(errno_rule)) == instructions(compiler, profile())
    other_errno = {"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    assert instructions(compiler, profile(other_errno)) > instructions(compiler, profile())


def test_conditions_on_one_argument_are_ored_as_separate_rules(compiler: Compiler) -> None:
    ored = allow("ioctl", args=[arg(0, 1), arg(0, 2)])
    # libseccomp refuses two conditions on one argument (EINVAL); runc adds one rule each.
    assert compiler.compile(profile(ored), [X86_64])[0].error is None
    separate = profile(allow("ioctl", args=[arg(0, 1)]), allow("ioctl", args=[arg(0, 2)]))
    assert instructions(compiler, profile(ored)) == instructions(compiler, separate)
    # Proof that they are separate rules: a later rule on `arg0 == 2` alone now clashes.
    clash = {"names": ["ioctl"], "action": "SCMP_ACT_LOG", "args": [arg(0, 2)]}
    [result] = compiler.compile(profile(ored, clash), [X86_64])
    assert result.rule_path == "spec.syscalls[1]"


def test_conditions_on_different_arguments_are_anded_in_one_rule(compiler: Compiler) -> None:
    anded = allow("ioctl", args=[arg(0, 1), arg(1, 2)])
    # A rule on `arg1 == 2` alone with another action clashes with a rule of its own (EEXIST),
    # not with the second half of an AND.
    alone = {"names": ["ioctl"], "action": "SCMP_ACT_LOG", "args": [arg(1, 2)]}
    [result] = compiler.compile(profile(anded, alone), [X86_64])
    assert result.error is None, result
    split = [allow("ioctl", args=[arg(0, 1)]), allow("ioctl", args=[arg(1, 2)])]
    [result] = compiler.compile(profile(*split, alone), [X86_64])
    assert result.rule_path == "spec.syscalls[2]"


def test_more_than_32_rules_turns_on_the_binary_tree_like_runc(compiler: Compiler) -> None:
    names = ["read", "write", "close", "fstat", "lseek", "mmap", "mprotect", "munmap", "brk"]
    names += ["rt_sigaction", "rt_sigprocmask", "ioctl", "pread64", "pwrite64", "readv"]
    names += ["writev", "access", "pipe", "select", "sched_yield", "mremap", "msync"]
    names += ["mincore", "madvise", "dup", "dup2", "pause", "nanosleep", "getitimer", "alarm"]
    names += ["setitimer", "getpid", "sendfile", "socket", "connect"]
    as_one_rule = instructions(compiler, profile(allow(*names)))
    thirty_two = profile(allow(*names[:4]), *(allow(n) for n in names[4:]))
    thirty_three = profile(allow(*names[:3]), *(allow(n) for n in names[3:]))
    assert len(thirty_two["syscalls"]) == 32 and len(thirty_three["syscalls"]) == 33
    assert instructions(compiler, thirty_two) == as_one_rule
    assert instructions(compiler, thirty_three) != as_one_rule


def test_numbers_up_to_uint64_max_pass_through(compiler: Compiler) -> None:
    top = allow("personality", args=[arg(0, 2**64 - 1)])
    assert compiler.compile(profile(top), [X86_64])[0].error is None
    masked = allow("personality", args=[{**arg(0, 2**64 - 1, "SCMP_CMP_MASKED_EQ"), "valueTwo": 8}])
    assert compiler.compile(profile(masked), [X86_64])[0].error is None


# Errors that name the rule


def test_same_condition_with_different_actions_names_the_rule(compiler: Compiler) -> None:
    first = allow("ioctl", args=[arg(1, 0x5401)])
    second = {"names": ["ioctl"], "action": "SCMP_ACT_LOG", "args": [arg(1, 0x5401)]}
    results = compiler.compile(profile(allow("read"), first, second), [X86_64, X86])
    for result in results:
        assert result.instructions is None
        assert result.rule_path == "spec.syscalls[2]"
        assert result.error is not None
        assert "`ioctl`" in result.error and "EEXIST" in result.error


@pytest.mark.parametrize(
    ("bad_arg", "path"),
    [
        (arg(0, 2**64), "spec.syscalls[0].args[0].value"),
        (arg(0, -1), "spec.syscalls[0].args[0].value"),
        (arg(6, 1), "spec.syscalls[0].args[0].index"),
        (arg(0, 1, "SCMP_CMP_ALMOST"), "spec.syscalls[0].args[0].op"),
        ({**arg(0, 1), "value": True}, "spec.syscalls[0].args[0].value"),
        ({**arg(0, 1), "op": ["SCMP_CMP_EQ"]}, "spec.syscalls[0].args[0].op"),
    ],
)
def test_malformed_arguments_are_errors_not_wrapped_numbers(
    compiler: Compiler, bad_arg: dict[str, Any], path: str
) -> None:
    [result] = compiler.compile(profile(allow("read", args=[bad_arg])), [X86_64])
    assert result.instructions is None
    assert result.rule_path == path
    assert result.error is not None and path in result.error


def test_an_unknown_default_action_names_the_field(compiler: Compiler) -> None:
    [result] = compiler.compile({"defaultAction": "SCMP_ACT_MAYBE"}, [X86_64])
    assert result.rule_path == "spec.defaultAction"
    assert result.error is not None and "SCMP_ACT_MAYBE" in result.error


def test_architectures_unknown_or_unsupported_here_are_per_architecture_errors(
    compiler: Compiler,
) -> None:
    results = compiler.compile(profile(allow("read")), ["SCMP_ARCH_VAX", X86_64, "SCMP_ARCH_SH"])
    assert results[0].error == "unknown architecture 'SCMP_ARCH_VAX'"
    assert results[1].instructions is not None
    # libseccomp 2.5.4 predates SuperH support.
    assert results[2].error is not None and "does not support SCMP_ARCH_SH" in results[2].error


def test_a_big_endian_architecture_compiles_on_a_little_endian_node(compiler: Compiler) -> None:
    assert instructions(compiler, profile(allow("read")), "SCMP_ARCH_S390X") > 0


def test_data_that_is_not_json_is_an_error_result(compiler: Compiler) -> None:
    [result] = compiler.compile({"defaultAction": "SCMP_ACT_ALLOW", "x": {1, 2}}, [X86_64])
    assert result.instructions is None
    assert result.error is not None and "not plain JSON" in result.error


# Survival: huge input, crashes, hangs


def test_thousands_of_argument_values_are_counted_past_the_kernel_limit(
    compiler: Compiler,
) -> None:
    rules = [allow("personality", args=[arg(0, value)]) for value in range(5000)]
    count = instructions(compiler, profile(*rules))
    assert count > 4096  # BPF_MAXINSNS: the kernel would refuse this filter


def test_a_compile_that_runs_too_long_times_out_and_the_next_one_works() -> None:
    # libseccomp's rule database is quadratic: 100,000 argument rules take minutes. (Validation
    # refuses such a profile before compiling; the compiler must survive it all the same.)
    rules = [allow("personality", args=[arg(0, value)]) for value in range(100_000)]
    before = worker_pids()
    with Compiler(timeout_seconds=1.0) as compiler:
        started = time.monotonic()
        [result] = compiler.compile(profile(*rules), [X86_64])
        # Minutes without the timeout; seconds with it, even on a loaded machine.
        assert time.monotonic() - started < 15
        assert result.instructions is None
        assert result.error is not None and "within 1 s" in result.error
        assert result.transient  # past the cost check, an overrun means a starved worker
        assert worker_pids() <= before, "the stuck worker must be gone"
        assert instructions(compiler, profile(allow("read"))) > 0


# Transient (the machine's fault: try again) versus deterministic (the profile's fault)


def test_a_crash_on_the_same_input_in_two_fresh_workers_is_the_profiles_fault(
    hooked_compiler: Compiler,
) -> None:
    oci = profile(allow("read"))
    oci[TEST_HOOK_KEY] = {"architecture": X86, "action": "segv"}
    results = hooked_compiler.compile(oci, [X86_64, X86, X32])
    assert results[0].instructions is not None
    assert results[1] == ArchCompileResult(
        X86,
        None,
        f"libseccomp crashed (signal 11, SIGSEGV) compiling for {X86}, "
        "twice, each time in a fresh worker",
        transient=False,
    )
    assert results[2].instructions is not None  # compiled by a fresh worker
    assert instructions(hooked_compiler, profile(allow("read"))) == results[0].instructions


def test_a_single_crash_is_retried_on_a_fresh_worker_and_not_reported(
    hooked_compiler: Compiler, tmp_path: Path
) -> None:
    before = worker_pids()
    instructions(hooked_compiler, profile(allow("read")))
    [first] = worker_pids() - before
    oci = profile(allow("read"))
    oci[TEST_HOOK_KEY] = {"architecture": X86, "action": "segv-once", "marker": str(tmp_path / "m")}
    results = hooked_compiler.compile(oci, [X86_64, X86])
    assert (tmp_path / "m").exists(), "the first worker must really have crashed"
    assert all(r.error is None and not r.transient for r in results), results
    assert first not in worker_pids()


def test_a_hanging_worker_times_out_for_the_whole_call_as_a_transient_failure(
    hooked_compiler: Compiler,
) -> None:
    oci = profile(allow("read"))
    oci[TEST_HOOK_KEY] = {"architecture": X86, "action": "hang"}
    started = time.monotonic()
    results = hooked_compiler.compile(oci, [X86_64, X86, X32])
    assert time.monotonic() - started < 9  # the limit is 3 s for the call, not per architecture
    assert results[0].instructions is not None and not results[0].transient
    assert results[1] == ArchCompileResult(
        X86,
        None,
        f"libseccomp did not finish compiling for {X86} within 3 s "
        "(the worker hung or the machine is overloaded); it will be tried again",
        transient=True,
    )
    assert results[2] == ArchCompileResult(
        X32, None, f"not compiled: the 3 s limit ran out on {X86}", transient=True
    )
    assert instructions(hooked_compiler, profile(allow("read"))) > 0


def test_a_worker_stopped_with_sigstop_times_out_as_transient_and_is_replaced() -> None:
    before = worker_pids()
    with Compiler(timeout_seconds=1.0) as compiler:
        instructions(compiler, profile(allow("read")))
        [pid] = worker_pids() - before
        os.kill(pid, signal.SIGSTOP)  # a frozen worker: the profile has nothing to do with it
        [result] = compiler.compile(profile(allow("read", "write")), [X86_64])
        assert result.transient and result.instructions is None
        assert result.error is not None and "within 1 s" in result.error
        assert pid not in worker_pids(), "the stopped worker must be killed, not leaked"
        assert instructions(compiler, profile(allow("read", "write"))) > 0


def test_a_worker_killed_from_outside_mid_compile_is_transient_and_replaced(
    hooked_compiler: Compiler,
) -> None:
    before = worker_pids()
    instructions(hooked_compiler, profile(allow("read")))  # start the worker
    [pid] = worker_pids() - before
    oci = profile(allow("read"))
    oci[TEST_HOOK_KEY] = {"architecture": X86_64, "action": "hang"}
    threading.Timer(0.2, os.kill, (pid, signal.SIGKILL)).start()
    [result] = hooked_compiler.compile(oci, [X86_64])
    assert result == ArchCompileResult(
        X86_64,
        None,
        f"the libseccomp worker was killed (signal 9, SIGKILL) compiling for {X86_64}",
        transient=True,
    )
    assert instructions(hooked_compiler, profile(allow("read"))) > 0
    assert len(worker_pids() - before) == 1 and pid not in worker_pids()


def test_validation_raises_instead_of_reporting_a_transient_failure_as_invalid(
    hooked_compiler: Compiler,
) -> None:
    before = worker_pids()
    instructions(hooked_compiler, profile(allow("read")))
    [pid] = worker_pids() - before
    hang = {"architecture": X86_64, "action": "hang"}

    def hanging_compile(document: Any, architectures: Any) -> list[ArchCompileResult]:
        # Validation re-renders the profile from its model, which has no room for the hook.
        return hooked_compiler.compile({**document, TEST_HOOK_KEY: hang}, architectures)

    threading.Timer(0.2, os.kill, (pid, signal.SIGKILL)).start()
    with pytest.raises(TransientCompileError, match="SIGKILL") as caught:
        validate_spec(
            profile(allow("read")), default_architectures=[X86_64], compile_profile=hanging_compile
        )
    assert [r.transient for r in caught.value.results] == [True]
    # A deterministic refusal is still a finding, never an exception.
    clash = profile(
        allow("ioctl", args=[arg(1, 5)]),
        {"names": ["ioctl"], "action": "SCMP_ACT_LOG", "args": [arg(1, 5)]},
    )
    report = validate_spec(
        clash, default_architectures=[X86_64], compile_profile=hooked_compiler.compile
    )
    assert [f.reason for f in report.errors] == ["CompileFailed"]


_EMFILE_SCRIPT = """
import json, resource, sys
from agent.seccomp.compiler import Compiler
from agent.validation.validate import validate_spec
from agent.seccomp.compiler import TransientCompileError

rules = [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]
oci = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": rules}
X86_64 = ["SCMP_ARCH_X86_64"]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
with Compiler() as compiler:
    # Every descriptor this process may open is taken: the worker's pipes cannot be created.
    resource.setrlimit(resource.RLIMIT_NOFILE, (0, hard))
    [starved] = compiler.compile(oci, X86_64)
    try:
        validate_spec(oci, default_architectures=X86_64, compile_profile=compiler.compile)
        raised = False
    except TransientCompileError:
        raised = True
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    [recovered] = compiler.compile(oci, X86_64)
print(json.dumps({"starved": starved.__dict__, "raised": raised, "recovered": recovered.__dict__}))
"""


def test_running_out_of_descriptors_is_transient_and_recovers() -> None:
    # In a child process: lowering RLIMIT_NOFILE in the test process would starve pytest.
    done = subprocess.run(
        [sys.executable, "-c", _EMFILE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    outcome = json.loads(done.stdout)
    starved = outcome["starved"]
    assert starved["transient"] is True and starved["instructions"] is None
    assert "cannot start the libseccomp worker" in starved["error"]
    assert "Too many open files" in starved["error"]
    assert outcome["raised"] is True
    assert outcome["recovered"]["error"] is None and outcome["recovered"]["instructions"] > 0


def test_a_deterministic_refusal_is_not_transient(compiler: Compiler) -> None:
    clash = profile(
        allow("ioctl", args=[arg(1, 5)]),
        {"names": ["ioctl"], "action": "SCMP_ACT_LOG", "args": [arg(1, 5)]},
    )
    [result] = compiler.compile(clash, [X86_64])
    assert result.error is not None and "EEXIST" in result.error
    assert result.transient is False


def test_a_worker_that_died_between_calls_is_not_blamed_on_the_next_profile() -> None:
    before = worker_pids()
    with Compiler() as compiler:
        instructions(compiler, profile(allow("read")))
        [pid] = worker_pids() - before
        os.kill(pid, signal.SIGKILL)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # dead, not yet reaped
        assert instructions(compiler, profile(allow("read"))) > 0


def test_the_shipped_worker_has_no_hooks(compiler: Compiler) -> None:
    oci = profile(allow("read"))
    oci[TEST_HOOK_KEY] = {"architecture": X86_64, "action": "segv"}
    assert instructions(compiler, oci) == instructions(compiler, profile(allow("read")))


# Sharing and lifetime


def test_threads_can_share_one_compiler(compiler: Compiler) -> None:
    names = ["read", "write", "close", "fstat", "lseek", "mmap", "brk", "getpid"]
    expected = {n: instructions(compiler, profile(allow(*names[:n]))) for n in range(1, 9)}
    seen: dict[int, set[int]] = {n: set() for n in expected}

    def work(offset: int) -> None:
        for i in range(40):
            n = (i + offset) % 8 + 1
            seen[n].add(instructions(compiler, profile(allow(*names[:n]))))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {n: {count} for n, count in expected.items()}


def test_close_stops_the_worker_and_refuses_further_use() -> None:
    before = worker_pids()
    compiler = Compiler()
    with compiler:
        instructions(compiler, profile(allow("read")))
        assert len(worker_pids() - before) == 1
    assert worker_pids() == before
    with pytest.raises(RuntimeError, match="after close"):
        compiler.compile(profile(), [X86_64])


# Lanes: one profile never delays another's


def expensive_but_allowed() -> dict[str, Any]:
    """256 rules x 6 equality conditions on one syscall: within the budget, not cheap."""
    rules = [allow("personality", args=[arg(i, v * 7 + i) for i in range(6)]) for v in range(256)]
    oci = profile(*rules)
    cost = estimate(oci, 1)
    assert cost.lane is Lane.EXPENSIVE and not cost.over_budget
    return oci


def test_the_expensive_lane_starts_its_worker_only_when_needed() -> None:
    before = worker_pids()
    with Compiler() as compiler:
        instructions(compiler, moby_default_oci(), X86_64)
        assert len(worker_pids() - before) == 1  # ~15 MB saved while nothing is expensive
        instructions(compiler, expensive_but_allowed())
        assert len(worker_pids() - before) == 2


def test_a_trivial_profile_never_waits_behind_expensive_ones(hooked_compiler: Compiler) -> None:
    instructions(hooked_compiler, profile(allow("read")))  # the cheap lane's worker is up
    stuck = expensive_but_allowed()
    # Each holds the expensive lane for the whole 1 s timeout, as a pathological compile would.
    stuck[TEST_HOOK_KEY] = {"architecture": X86_64, "action": "hang"}
    results: list[ArchCompileResult] = []
    threads = [
        threading.Thread(target=lambda: results.extend(hooked_compiler.compile(stuck, [X86_64])))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    while not hooked_compiler.lane_busy(Lane.EXPENSIVE):
        time.sleep(0.01)
    [trivial] = hooked_compiler.compile(profile(allow("read", "write")), [X86_64])
    # The trivial compile is done while the three expensive ones still hold (or wait for) theirs.
    assert hooked_compiler.lane_busy(Lane.EXPENSIVE)
    assert trivial.error is None and trivial.instructions is not None
    assert results == []
    for thread in threads:
        thread.join()
    assert len(results) == 3 and all(r.transient for r in results)
