"""What the benchmarks check and prepare on the machine before they measure anything.

On a virtual machine, the first write to a page of guest memory is served by the host, and that
costs far more than any later write: here, filling 6 GB the first time after boot took 14.9 s and
0.66 s every time after; 20 GB took 42.5 s, then 4.2 s (measured 2026-12-07). A benchmark that
runs its contender first and its baseline second would charge the first touch of the machine's
memory to the contender alone. So both are measured on memory touched just before, by a separate
process that exits before anything is timed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

_TOUCH = "import sys, numpy; numpy.ones(int(sys.argv[1]) // 8)"


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def warm_memory(size: int | None = None) -> str:
    """Write once to ``size`` bytes (default: 80 % of the available memory) in a child process that
    exits at once; returns a line to print. The host takes freed guest pages back after some seconds
    idle (measured: warm 5 s after a free, cold again after 20 s), so call it right before each
    contender, not once at the start."""
    size = int(size if size is not None else available_bytes() * 0.8)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", _TOUCH, str(size)], check=True)
    return f"memory warmed: {size / 2**30:.1f} GiB written once in {time.perf_counter() - started:.1f}s before timing"


def load() -> str:
    """The load average over 1, 5 and 15 minutes."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
