"""Peak resident memory on CPU, the measure the benchmarks share (Linux): reset the kernel's peak mark, run,
read the peak. Each measured method runs in a fresh subprocess, so nothing earlier in it can hide its peak."""
from __future__ import annotations


def status_bytes(field: str) -> int:
    """VmRSS / VmHWM of this process from /proc/self/status, in bytes."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark to the current RSS and return that RSS (Linux 4.0+).

    ru_maxrss never goes down, so after a model build whose temporaries peaked higher than a capture
    does, the capture's growth read 0 (bench ratio nan). Writing 5 to clear_refs resets VmHWM.
    """
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_bytes("VmRSS")
