"""This process's own figures, as the node endpoints and /metrics both show them: memory and file descriptors.

RabbitMQ reports the Erlang VM's; here the broker is one OS process, so these read /proc
(with getrusage/getrlimit where /proc is missing).
"""

from __future__ import annotations

import os
import resource


def resident_memory() -> int:
    """Resident set size of this process, in bytes (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fd_counts() -> tuple[int, int]:
    """(open file descriptors, the soft limit on them)."""
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        used = 0
    return used, resource.getrlimit(resource.RLIMIT_NOFILE)[0]
