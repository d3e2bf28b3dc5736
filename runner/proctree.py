"""Process trees: find, freeze and kill a worker and everything it started.

A unit's worker runs in its own session and process group, but a task may start processes that
leave both (``os.setsid``, ``start_new_session=True``, a daemonising double fork); killing the
group alone leaves those running. So the supervisor of an attempt tracks the worker's whole tree
(:class:`ProcessTree`), and the worker makes itself a *child subreaper* on Linux
(:func:`become_subreaper`): a descendant whose parent exits is re-parented to the worker instead
of to init, so it stays in the tree the supervisor scans.

Killing (:meth:`ProcessTree.kill`) first *freezes* the tree: SIGSTOP to the worker and to every
descendant, re-scanning until no new process appears (a stopped process cannot fork), so nothing
escapes between the scan and the kill. Then every member gets SIGTERM and SIGCONT, ``grace_s``
to exit, and the tree is frozen and scanned again and every member left gets SIGKILL. Members
already seen stay tracked after they are orphaned (e.g. when the worker dies first), so they are
killed too. psutil guards every signal against a recycled pid (it checks the process's creation
time). Each scan reads the parent pid of every process on the host (one pass over ``/proc``).

psutil is imported lazily, so importing this module costs the worker nothing at start.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

__all__ = ["ProcessTree", "become_subreaper", "kill_descendants"]

log = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36
_MAX_FREEZE_ROUNDS = 50


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux ``prctl(PR_SET_CHILD_SUBREAPER)``): orphaned
    descendants are re-parented to it. Returns whether that worked (False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _signal(p: Any, sig: int) -> None:
    import psutil

    try:
        p.send_signal(sig)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass


class ProcessTree:
    """A root process (the worker) and every descendant seen so far. Thread-safe."""

    def __init__(self, pid: int):
        import psutil

        self.pid = pid
        self._lock = threading.RLock()
        try:
            self._root: Any = psutil.Process(pid)
        except psutil.NoSuchProcess:
            self._root = None
        self._known: dict[int, Any] = {}  # pid -> psutil.Process (creation time remembered)
        self.peak_rss = 0

    def scan(self) -> list:
        """Refresh and return the live members: the root and the descendants of the root and
        of every member seen before that left the root's tree (orphans re-parented to init)."""
        import psutil

        with self._lock:
            live = {pid: p for pid, p in self._known.items() if _alive(p)}
            found: dict[int, Any] = {}

            def below(top: Any) -> None:
                try:
                    kids = top.children(recursive=True)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    return
                for k in kids:
                    found.setdefault(k.pid, live.get(k.pid, k))

            if self._root is not None:
                below(self._root)
            for pid, p in live.items():
                if pid not in found:  # orphaned (re-parented out of the tree): still ours
                    found[pid] = p
                    below(p)
            found.pop(os.getpid(), None)
            self._known = found
            members = list(found.values())
            if self._root is not None and self._root.is_running():
                members.insert(0, self._root)
            return members

    def descendants(self) -> list:
        """The live members other than the root."""
        return [p for p in self.scan() if p.pid != self.pid]

    def rss_bytes(self) -> int:
        """Resident memory of the tree now (sum over its members: pages shared between them
        count once per process). Also updates :attr:`peak_rss`."""
        import psutil

        total = 0
        for p in self.scan():
            try:
                total += p.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        self.peak_rss = max(self.peak_rss, total)
        return total

    def freeze(self, include_root: bool = True) -> list:
        """SIGSTOP every member (the root only if ``include_root``) until a scan finds no new
        one; returns the members."""
        with self._lock:
            stopped: set[int] = set() if include_root else {self.pid}
            members: list = []
            for _ in range(_MAX_FREEZE_ROUNDS):
                members = self.scan()
                new = [p for p in members if p.pid not in stopped]
                if not new:
                    break
                for p in new:
                    _signal(p, signal.SIGSTOP)
                    stopped.add(p.pid)
            return members

    def kill(self, grace_s: float, proc: subprocess.Popen | None = None) -> None:
        """Freeze the tree, SIGTERM (and SIGCONT) every member, wait up to ``grace_s`` for them
        to exit, then freeze again and SIGKILL every member left; reap ``proc`` (the root's
        Popen) if given."""
        with self._lock:
            members = self.freeze()
            for p in members:
                _signal(p, signal.SIGTERM)
            for p in members:
                _signal(p, signal.SIGCONT)
            deadline = time.monotonic() + max(0.0, grace_s)
            while time.monotonic() < deadline:
                root_alive = proc.poll() is None if proc is not None else (
                    self._root is not None and _alive(self._root))
                if not root_alive and not any(_alive(p) for p in members if p.pid != self.pid):
                    break
                time.sleep(0.02)
            for p in self.freeze():
                _signal(p, signal.SIGKILL)
            try:
                os.killpg(self.pid, signal.SIGKILL)  # the worker's group, whatever was missed
            except (ProcessLookupError, PermissionError):
                pass
        if proc is not None:
            proc.wait()


def _alive(p: Any) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_descendants() -> int:
    """SIGKILL every descendant of this process (frozen first, see the module docstring);
    returns how many there were. Never raises."""
    try:
        tree = ProcessTree(os.getpid())
        members = [p for p in tree.freeze(include_root=False)
                   if p.pid != os.getpid() and _alive(p)]  # zombies are not running
        for p in members:
            _signal(p, signal.SIGKILL)
        return len(members)
    except Exception as exc:  # best effort on the way out
        log.debug("killing descendants: %s", exc)
        return 0
