"""Process-level settings: allocator tuning and the default thread count."""

import os
import subprocess
import sys

import pytest

from certifier import runtime
from certifier.pipeline import Options


def _tune_in_subprocess(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("CERTIFY_MALLOC_TUNING", None)
    if env_value is not None:
        env["CERTIFY_MALLOC_TUNING"] = env_value
    code = "from certifier import runtime; print(runtime.tune_allocator(), runtime.tune_allocator())"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return r.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_allocator_tuning_applies_once_and_can_be_disabled():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _tune_in_subprocess(None) == "True True"  # applied, and idempotent
    assert _tune_in_subprocess("0") == "False False"  # the documented opt-out


def test_default_threads_is_fixed_and_shared():
    # NB: a fixed count (not os.cpu_count()) keeps certificates reproducible across machines.
    assert runtime.DEFAULT_THREADS == 2
    assert Options(eps=1e-3).threads == runtime.DEFAULT_THREADS
    from smt.prove import ProveOptions

    assert ProveOptions(eps=1e-3, hardware="a100").threads == runtime.DEFAULT_THREADS


def _refault_pages(env_value: str | None) -> int:
    """Page faults of filling a 48 MB tensor after a 64 MB one was freed.

    NB: a smaller second block: torch allocates with posix_memalign, whose padding makes a
    freed block of exactly the same size slightly too small to be reused."""
    env = dict(os.environ)
    env.pop("CERTIFY_MALLOC_TUNING", None)
    if env_value is not None:
        env["CERTIFY_MALLOC_TUNING"] = env_value
    code = (
        "import resource, torch\n"
        "from certifier import runtime\n"
        "runtime.tune_allocator()\n"
        "a = torch.ones(8_000_000, dtype=torch.float64); del a\n"
        "f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "b = torch.ones(6_000_000, dtype=torch.float64); del b\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(r.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_allocator_tuning_reuses_blocks_above_32_mib():
    """A freed 64 MB block (above glibc's largest mmap threshold) is reused, not unmapped and
    its pages faulted in again (12k) by the next large allocation."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _refault_pages("0") > 10_000  # glibc's default: a fresh mapping each time
    assert _refault_pages(None) < 2_000
