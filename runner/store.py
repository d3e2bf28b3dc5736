"""Result store: atomic JSON records, one per arm, and their consolidated table.

Every file is written whole: to a temporary file in the destination's directory, flushed and
fsynced, then renamed over the destination with :func:`os.replace` (atomic on POSIX). A killed
process therefore leaves either the old file or the new one, never a torn one, and at most a
stray ``.tmp-*`` file that readers ignore.

The records (``records/<arm_id>.json``) are the source of truth; ``metrics.parquet`` and
``metrics.csv`` are derived from them by :func:`consolidate`. This module imports pandas only
inside the functions that build tables, so the worker can use the JSON helpers cheaply.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .paths import OutputPaths

__all__ = [
    "STATUSES",
    "COLUMNS",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_write_json",
    "read_json",
    "read_record",
    "read_records",
    "records_frame",
    "consolidate",
    "history_frame",
    "load_results",
]

log = logging.getLogger(__name__)

#: Every arm ends in exactly one of these.
STATUSES = ("ok", "failed", "timeout", "crashed")

#: Fixed leading columns of the results table; other keys follow, sorted by name.
COLUMNS = (
    "sweep", "arm_id", "unit_id", "N", "gridsize", "nphotons", "loss", "seed",
    "status", "error", "pid", "wall_s", "train_s", "peak_rss_mb",
    "amp_mae", "amp_mse", "amp_psnr", "amp_ssim", "amp_frc50",
    "phase_mae", "phase_mse", "phase_psnr", "phase_ssim", "phase_frc50",
    "final_loss",
)

_SORT = ["N", "gridsize", "nphotons", "loss", "seed", "arm_id"]

#: Record key holding the arm's per-epoch history (a list of dicts, one per epoch). It goes to
#: the history table, not to the metrics table.
HISTORY_KEY = "history"
#: Columns copied from an arm's record onto each of its history rows.
HISTORY_IDENTITY = ("sweep", "arm_id", "N", "gridsize", "nphotons", "loss", "seed")


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


#: mkstemp creates 0600 files; written files get the usual umask-based mode instead.
_MODE = _file_mode()


# -- atomic files ----------------------------------------------------------------------------
def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), _MODE)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and friends without importing numpy
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return repr(obj)


def to_json(obj: Any) -> str:
    """JSON text of ``obj``; numpy values become Python values, NaN stays NaN."""
    return json.dumps(obj, indent=1, sort_keys=False, default=_json_default)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    atomic_write_text(path, to_json(obj) + "\n")


def read_json(path: str | Path) -> Any:
    """Parse the JSON file at ``path``."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# -- records ---------------------------------------------------------------------------------
def read_record(paths: OutputPaths, arm_id: str) -> dict[str, Any] | None:
    """The record of ``arm_id``, or None if there is none (or it cannot be parsed)."""
    path = paths.record(arm_id)
    try:
        rec = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # cannot happen with atomic writes; be tolerant
        log.warning("ignoring unreadable record %s: %s", path, exc)
        return None
    return rec if isinstance(rec, dict) else None


def read_records(paths: OutputPaths) -> dict[str, dict[str, Any]]:
    """Every record in ``records/``, keyed by arm_id (temporary files are ignored)."""
    out: dict[str, dict[str, Any]] = {}
    if not paths.records_dir.is_dir():
        return out
    for path in sorted(paths.records_dir.glob("*.json")):
        rec = read_record(paths, path.stem)
        if rec is not None:
            out[path.stem] = rec
    return out


# -- tables ----------------------------------------------------------------------------------
def _ordered_columns(keys: Iterable[str]) -> list[str]:
    extra = sorted(set(keys) - set(COLUMNS))
    return list(COLUMNS) + extra


def records_frame(records: Iterable[Mapping[str, Any]]):
    """A DataFrame of ``records``: fixed :data:`COLUMNS` first (NaN when missing), then the
    other keys sorted; rows sorted by N, gridsize, nphotons, loss, seed."""
    import pandas as pd

    rows = [{k: v for k, v in r.items() if k != HISTORY_KEY} for r in records]
    keys: set[str] = set()
    for r in rows:
        keys.update(r)
    cols = _ordered_columns(keys)
    df = pd.DataFrame(rows, columns=cols)
    if not len(df):
        return df.astype("float64")
    for col in ("N", "gridsize", "seed", "pid"):
        if df[col].notna().all():
            df[col] = df[col].astype("int64")
    return df.sort_values(_SORT, kind="stable", na_position="last").reset_index(drop=True)


def history_frame(records: Iterable[Mapping[str, Any]]):
    """The per-epoch history of every arm: :data:`HISTORY_IDENTITY` columns, then ``epoch``
    and the history's own columns (``train_loss``, ``val_loss``, ``lr``, ``epoch_s``, ...);
    one row per arm and epoch, sorted like the metrics table, then by epoch."""
    import pandas as pd

    rows = []
    for rec in records:
        history = rec.get(HISTORY_KEY)
        if not isinstance(history, list):
            continue
        ident = {k: rec.get(k) for k in HISTORY_IDENTITY}
        # An epoch's own keys never overwrite the arm's identity: a clash gets "epoch_".
        rows += [{**ident, **{(f"epoch_{k}" if k in ident else k): v for k, v in row.items()}}
                 for row in history if isinstance(row, Mapping)]
    if not rows:
        return pd.DataFrame(columns=[*HISTORY_IDENTITY, "epoch"])
    df = pd.DataFrame(rows)
    lead = [*HISTORY_IDENTITY, "epoch"]
    df = df[lead + sorted(set(df.columns) - set(lead))]
    return df.sort_values([*_SORT, "epoch"], kind="stable").reset_index(drop=True)


def _parquet_bytes(df) -> bytes:
    """Parquet of ``df``; object columns pyarrow cannot type (mixed values) become strings."""
    import io

    buf = io.BytesIO()
    try:
        df.to_parquet(buf, index=False)
    except (TypeError, ValueError):  # pyarrow.ArrowTypeError / ArrowInvalid
        fixed = df.copy()
        for col in fixed.columns:
            if fixed[col].dtype == object:
                fixed[col] = fixed[col].map(lambda v: v if v is None or (
                    isinstance(v, float) and math.isnan(v)) else str(v))
        buf = io.BytesIO()
        fixed.to_parquet(buf, index=False)
    return buf.getvalue()


def consolidate(paths: OutputPaths, records: Mapping[str, Mapping[str, Any]] | None = None):
    """Write ``metrics.parquet`` and ``metrics.csv`` (atomically) from the records and return
    the table. ``records`` (arm_id -> record) avoids re-reading every file when given."""
    if records is None:
        records = read_records(paths)
    df = records_frame(records.values())
    history = history_frame(records.values())
    if len(history):
        atomic_write_bytes(paths.history_parquet, _parquet_bytes(history))
        atomic_write_text(paths.history_csv, history.to_csv(index=False))
    atomic_write_bytes(paths.metrics_parquet, _parquet_bytes(df))
    atomic_write_text(paths.metrics_csv, df.to_csv(index=False))
    return df


def load_results(out_dir: str | Path):
    """The results table of the sweep in ``out_dir``: built from its records (the source of
    truth), else from ``metrics.parquet``. Raises FileNotFoundError if there is neither."""
    import pandas as pd

    paths = OutputPaths(out_dir)
    if not paths.root.is_dir():
        raise FileNotFoundError(f"{paths.root}: no such directory")
    if paths.records_dir.is_dir():
        return records_frame(read_records(paths).values())
    if paths.metrics_parquet.is_file():
        return pd.read_parquet(paths.metrics_parquet)
    raise FileNotFoundError(f"{paths.root}: no records/ and no metrics.parquet; not a sweep output")
