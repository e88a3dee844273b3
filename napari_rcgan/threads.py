"""How many CPU threads torch may use for sampling, so that nothing oversubscribes the cores.

The rule: torch's intra-op threads = the cores this process may run on, minus the cores kept for
a GUI thread in the same process (``reserved``: 1 in the napari widget, 0 in the CLI), minus
the cores other processes keep busy (the 1-minute load average), and at least 1. The statistics
(numpy) run between the forward passes in the same worker thread, so they never compete with
torch's threads. Measured on 2 cores (``benchmarks/demo_latency.py``): under a concurrent load,
two intra-op threads made a sample up to 25× slower than one (OpenMP threads spinning at their
barriers while the other core is taken), so a busy machine gets one thread.

``OMP_NUM_THREADS`` or ``NAPARI_RCGAN_THREADS`` in the environment override the rule.
"""

from __future__ import annotations

import os

THREADS_ENV = "NAPARI_RCGAN_THREADS"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def busy_cores() -> float:
    """Cores other work keeps busy: the 1-minute load average (0 where the OS has none)."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return 0.0


def intra_op_threads(reserved: int = 0, cores: int | None = None,
                     busy: float | None = None) -> int:
    """The rule of the module docstring: ``max(1, min(cores − reserved, round(cores − busy)))``."""
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    cores = available_cores() if cores is None else cores
    busy = busy_cores() if busy is None else busy
    return max(1, min(cores - reserved, round(cores - busy)))


def apply_intra_op_threads(reserved: int = 0) -> int:
    """Set torch's intra-op threads by the rule; returns the number set."""
    import torch

    threads = intra_op_threads(reserved)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
