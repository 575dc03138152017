"""Process-level settings of the analysis: the default torch thread count, and the tuning of
glibc's allocator for the analysis's allocation pattern.

``DEFAULT_THREADS``: the analysis runs on a fixed number of torch threads (not the machine's
core count) so that certificates are bitwise reproducible; see ``pipeline.Options.threads``.

The analysis allocates and frees float64 tensors of tens of MB per node (BERT-base: an error
tensor of 7 configurations x 128 x 3072 is 22 MB). With glibc's defaults, a freed block at the
top of the heap above ``M_TRIM_THRESHOLD`` is returned to the kernel and the next allocation
faults every page in again; blocks above the (dynamic) mmap threshold are mapped and unmapped
each time. On BERT-base that kernel time was a third of the run (sys 8-10 s of 31 s).

:func:`tune_allocator` keeps freed memory in the process instead: blocks up to 32 MiB come from the heap
(``M_MMAP_THRESHOLD``, glibc's largest allowed value on 64-bit), larger ones too (``M_MMAP_MAX``
= 0: no block is served by its own mapping, which was unmapped on free and faulted in again
on the next allocation), and the heap is trimmed only above 1 GiB free at the top
(``M_TRIM_THRESHOLD``); memory is returned to the kernel later. Measured on BERT-base (2
cores; thresholds only): bounds 5.2 -> 3.5 s, local error pass 9.8 -> 6.6 s, max RSS 2.63 GB
either way. ResNet-50's error passes allocate 45 MB error tensors, above the largest threshold;
``M_MMAP_MAX = 0`` took its uniform error pass from 10.9 s (2.5 M page faults, 8 s of kernel
time) to 5.5 s (0.2 M faults), max RSS 2.56 -> 2.66 GB (benchmarks/speed.py).

The CLI calls it once at start-up; a library user may call it too. It changes nothing (and
returns False) off glibc or when ``CERTIFY_MALLOC_TUNING=0``. Numbers only get faster: the
arithmetic is unchanged, so certificates are byte-identical with or without it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024

#: Default torch thread count for the analysis (``certify --threads``).
DEFAULT_THREADS = 2

_done: bool | None = None


def tune_allocator() -> bool:
    """Apply the settings above once per process; True when they took effect."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("CERTIFY_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # NB: set the mmap threshold first; setting either disables glibc's dynamic adjustment.
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    # Blocks above 32 MiB (ResNet-50: 7 configurations x 64 x 112 x 112 float64 = 45 MB) come
    # from the heap too instead of a fresh mapping each time (M_MMAP_MAX = 0).
    ok = ok and mallopt(M_MMAP_MAX, 0) == 1
    _done = ok
    return ok
