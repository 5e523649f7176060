"""A CPU thread count for torch that degrades gracefully on a busy machine.

torch's CPU kernels split work over OpenMP threads that meet at barriers after every operation; when
another process (Slicer itself, a second job) keeps a core busy, a thread that loses its core holds
all the others at the next barrier, and a registration of thousands of small operations slows
5-18x.  ITK's threads do not synchronise that often and slow about 2x.  The policy of
:func:`auto_threads`: as many threads as there are *idle* cores right now (measured over
``interval`` seconds from ``/proc/stat``), at most the physical cores, at least one; where the
load cannot be measured, the physical cores.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


def usable_cores() -> int:
    """Logical cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def physical_cores() -> int:
    """Distinct (package, core) pairs in ``/proc/cpuinfo``, at most :func:`usable_cores` (hyper-threads
    share one core's arithmetic units, so a second torch thread on them rarely pays)."""
    usable = usable_cores()
    try:
        pairs, package = set(), "0"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "physical id":
                package = value.strip()
            elif key.strip() == "core id":
                pairs.add((package, value.strip()))
        return max(1, min(usable, len(pairs))) if pairs else usable
    except OSError:
        return usable


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs from ``/proc/stat``."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - idle, total


def busy_cores(interval: float = 0.05) -> float | None:
    """How many cores other processes keep busy, averaged over ``interval`` seconds (None: unknown)."""
    first = _cpu_times()
    time.sleep(interval)
    second = _cpu_times()
    if first is None or second is None or second[1] <= first[1]:
        return None
    return (second[0] - first[0]) / (second[1] - first[1]) * (os.cpu_count() or 1)


def auto_threads(interval: float = 0.05) -> int:
    """Threads for torch now: the idle cores (rounded), between 1 and the physical cores."""
    physical = physical_cores()
    busy = busy_cores(interval)
    if busy is None:
        return physical
    idle = usable_cores() - busy
    return max(1, min(physical, int(idle + 0.5)))
