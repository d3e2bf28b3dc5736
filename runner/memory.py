"""Peak resident memory of a worker, per arm.

``peak_rss_mb`` is the arm's own peak resident memory: on Linux the kernel's high-water mark
(``VmHWM``) is reset when the arm starts (writing ``5`` to ``/proc/self/clear_refs``) and read
when its record is written; the first arm's window starts when the task is called (so it
includes the task's setup). Where the reset is not possible it is the process's peak so far
(``ru_maxrss``). The outcome's ``peak_rss_mb`` is the process's peak over the whole unit.
"""

from __future__ import annotations

import resource
import sys

__all__ = ["peak_rss_mb", "ArmPeak"]


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (since the last :class:`ArmPeak` reset)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


class ArmPeak:
    """Per-arm peak RSS (see the module docstring): :meth:`reset` at an arm's start,
    :meth:`read` at its end; :attr:`process_mb` keeps the process's overall peak."""

    CLEAR_REFS = "/proc/self/clear_refs"
    STATUS = "/proc/self/status"

    def __init__(self) -> None:
        self.process_mb = 0.0
        self.per_arm = self.reset()

    def _hwm_mb(self) -> float:
        try:
            with open(self.STATUS, encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) / 1024, 1)
        except (OSError, ValueError, IndexError):
            pass
        return peak_rss_mb()

    def reset(self) -> bool:
        """Start a new window; False if the high-water mark cannot be reset here."""
        self.process_mb = max(self.process_mb, self._hwm_mb())
        try:
            with open(self.CLEAR_REFS, "w", encoding="ascii") as fh:
                fh.write("5")
            return True
        except OSError:
            return False

    def read(self) -> float:
        """Peak RSS (MiB) of the current window (the process's so far if not resettable)."""
        mb = self._hwm_mb()
        self.process_mb = max(self.process_mb, mb)
        return mb if self.per_arm else self.process_mb
