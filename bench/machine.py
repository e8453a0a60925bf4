"""What the bench ran on, in one line for the tables: numbers only mean something next to it."""

from __future__ import annotations

import os
import platform


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1024 * 1024)
    except (OSError, ValueError):
        pass
    return None


def describe() -> str:
    """CPU model and cores, memory, kernel, Python, and the load average when the run began
    (other work on the machine competes with the servers under test for its cores)."""
    memory = _memory_gib()
    parts = [
        f"{_cpu_model()}, {os.cpu_count()} cores",
        f"{memory:.0f} GiB RAM" if memory is not None else "",
        f"{platform.system()} {platform.release()}",
        f"Python {platform.python_version()}",
    ]
    try:
        load = os.getloadavg()
        parts.append(f"load average {load[0]:.2f} at start")
    except OSError:
        pass
    return "; ".join(p for p in parts if p)
