"""The handle of one unit attempt submitted to Dask (the orchestrator's side of the ``dask``
backend, :mod:`runner.dask_executor`): it waits for the task, writes the records the task
streams back while the unit runs, then what the task ships at the end, and turns a task that
did not return (a lost worker, a cancel) into the attempt's result.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from .dask_results import lost_error, tag_shared, write_back, write_record
from .executors import AttemptHandle, AttemptJob, AttemptResult

if TYPE_CHECKING:
    from .dask_executor import DaskExecutor

__all__ = ["DaskAttempt"]

log = logging.getLogger("runner.dask_executor")


class DaskAttempt(AttemptHandle):
    """One attempt submitted to Dask. ``done()`` and ``result()`` write the records streamed
    back so far; ``result()`` then writes what the task shipped, once."""

    def __init__(self, executor: DaskExecutor, job: AttemptJob, unit: dict[str, Any],
                 key: str, stream: queue.SimpleQueue | None):
        super().__init__(job)
        self.executor, self.unit, self.key, self.stream = executor, unit, key, stream
        self.future: Any = None
        self.written: dict[str, dict] = {}  # arm_id -> the record of this attempt written
        self.start = time.monotonic()
        self._cancelled = threading.Event()
        self._result: AttemptResult | None = None
        if stream is None:  # submitted after a cancel: never started
            self._result = AttemptResult(job.unit_id, None, None, cancelled=True)

    def _drain(self) -> None:
        """Write the records streamed back so far for this attempt."""
        while self.stream is not None:
            try:
                msg = self.stream.get_nowait()
            except queue.Empty:
                return
            write_record(self.unit, msg.get("record"), msg.get("worker"), self.written)

    def done(self) -> bool:
        if self._result is not None:
            return True
        self._drain()
        return self._cancelled.is_set() or self.future.done()

    def cancel(self) -> None:
        self._cancelled.set()
        if self.future is not None:
            with contextlib.suppress(Exception):
                self.future.cancel()

    def result(self, timeout: float | None = None) -> AttemptResult:
        if self._result is None:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self.done():
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"unit {self.job.unit_id}: attempt still running")
                if self._cancelled.wait(self.executor.poll_s) or \
                        self.executor._cancelled.is_set():
                    self.cancel()
            self._result = self._finish()
        return self._result

    def _finish(self) -> AttemptResult:
        job, unit, ex = self.job, self.unit, self.executor
        wall = time.monotonic() - self.start
        try:
            if self._cancelled.is_set() or ex._cancelled.is_set():
                return AttemptResult(job.unit_id, None, None, cancelled=True, wall_s=wall)
            try:
                shipped = self.future.result()
            except Exception as exc:
                self._drain()
                if self._cancelled.is_set() or ex._cancelled.is_set():
                    return AttemptResult(job.unit_id, None, None, cancelled=True, wall_s=wall)
                error = lost_error(ex._distributed, exc)
                log.warning("unit %s: %s", job.unit_id, error)
                return AttemptResult(job.unit_id, None, None, wall_s=wall, error=error)
            finally:
                with contextlib.suppress(Exception):
                    self.future.release()
        finally:
            ex._forget(self.key)
        result: AttemptResult = shipped["result"]
        log.debug("unit %s: attempt ended on Dask worker %s (exit %s)", job.unit_id,
                  shipped.get("worker"), result.returncode)
        if ex.shared_dir:
            tag_shared(unit, shipped.get("worker"))
        else:
            self._drain()
            write_back(unit, shipped, self.written)
        return result
