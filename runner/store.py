"""Result store: atomic JSON records, one per arm, and their consolidated table.

The columns and their dtypes are declared in :mod:`runner.schema` (re-exported here:
``STATUSES``, ``COLUMNS``, ``PROVENANCE``).

Every file is written whole: to a temporary file in the destination's directory, flushed and
fsynced, then renamed over the destination with :func:`os.replace` (atomic on POSIX). A killed
process therefore leaves either the old file or the new one, never a torn one, and at most a
stray ``.tmp-*`` file that readers ignore.

The records (``records/<arm_id>.json``) are the source of truth; ``metrics.parquet`` and
``metrics.csv`` are derived from them by :func:`consolidate`. This module imports pandas only
inside the functions that build tables, so the worker can use the JSON helpers cheaply.

A record that is not what the runner writes (hand-edited: not a JSON object, ``arm_id`` not its
file name, an unknown ``status``, identity columns of the wrong type; see
:func:`record_problem`) is moved to ``<out>/quarantine/`` with a warning when it is read, so
``status``, ``run`` and the table keep working and its arm counts as never run (a re-run runs
it). If it cannot be moved (read-only output) it is skipped with the same warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .paths import OutputPaths
from .schema import (
    COLUMNS,
    DTYPES,
    HISTORY_IDENTITY,
    IDENTITY,
    METRICS,
    PROVENANCE,
    PROVENANCE_SETTINGS,
    STATUSES,
    table_dtype,
)

__all__ = [
    "STATUSES",
    "COLUMNS",
    "PROVENANCE",
    "QUARANTINE_DIR",
    "record_problem",
    "atomic_write_text",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_many",
    "read_json",
    "read_record",
    "read_records",
    "records_frame",
    "complete_records",
    "consolidate",
    "history_frame",
    "load_results",
]

log = logging.getLogger(__name__)

#: Hand-edited or otherwise invalid records are moved here (under the output directory).
QUARANTINE_DIR = "quarantine"
#: The Python types a record's JSON value may have, per declared table dtype.
_JSON_TYPES = {"string": (str,), "int64": (int,), "float64": (int, float)}
#: Identity columns a record must have, with their types (from :data:`IDENTITY`; ``arm_id`` is
#: checked against the file name, ``unit_id`` only when present).
_IDENTITY_TYPES = {k: _JSON_TYPES[v] for k, v in IDENTITY.items()
                   if k not in ("arm_id", "unit_id")}
#: Optional columns checked when present (the table casts or sorts on them).
_OPTIONAL_TYPES = {"unit_id": (str,), "pid": (int, type(None)), "error": (str, type(None)),
                   "wall_s": (int, float, type(None))}

_SORT = ["N", "gridsize", "nphotons", "loss", "seed", "arm_id"]

#: Record key holding the arm's per-epoch history (a list of dicts, one per epoch). It goes to
#: the history table, not to the metrics table.
HISTORY_KEY = "history"


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
def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float) and float in types:
        return math.isfinite(value)
    return isinstance(value, types)


def record_problem(rec: Any, arm_id: str) -> str | None:
    """What makes ``rec`` not a valid record of ``arm_id`` (None if it is valid)."""
    if not isinstance(rec, dict):
        return f"it is a JSON {type(rec).__name__}, not an object"
    if rec.get("arm_id") != arm_id:
        return f"its arm_id {rec.get('arm_id')!r} is not its file name {arm_id!r}"
    if rec.get("status") not in STATUSES:
        return f"its status {rec.get('status')!r} is not one of {', '.join(STATUSES)}"
    for key, types in _IDENTITY_TYPES.items():
        if key not in rec:
            return f"it has no {key!r}"
        if not _type_ok(rec[key], types):
            return f"its {key} = {rec[key]!r} is not a {' or '.join(t.__name__ for t in types)}"
    for key, types in _OPTIONAL_TYPES.items():
        if key in rec and not _type_ok(rec[key], types) and rec[key] is not None:
            return f"its {key} = {rec[key]!r} is not a {types[0].__name__}"
    return None


def _quarantine(paths: OutputPaths, path: Path, ino: int | None, reason: str) -> None:
    """Move the bad record ``path`` to ``<out>/quarantine/`` (unless it was replaced since it
    was read, i.e. its inode changed), or leave it; warn either way."""
    qdir = paths.root / QUARANTINE_DIR
    try:
        if ino is not None and os.stat(path).st_ino != ino:
            return  # rewritten meanwhile (atomically, by a worker): not the file we judged
        qdir.mkdir(exist_ok=True)
        dest = qdir / path.name
        n = 0
        while dest.exists():
            n += 1
            dest = qdir / f"{path.name}.{n}"
        os.replace(path, dest)
    except OSError as exc:
        log.warning("invalid record %s skipped (%s); could not move it to %s: %s", path, reason,
                    qdir, exc.strerror or exc)
        return
    log.warning("invalid record %s (%s) moved to %s; its arm counts as not run", path, reason,
                dest)


def read_record(paths: OutputPaths, arm_id: str) -> dict[str, Any] | None:
    """The record of ``arm_id``, or None if there is none. An invalid one (unparsable, or see
    :func:`record_problem`) is quarantined with a warning and None is returned."""
    path = paths.record(arm_id)
    ino = None
    try:
        with open(path, "rb") as fh:
            ino = os.fstat(fh.fileno()).st_ino
            rec = json.loads(fh.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:  # never from atomic writes: hand-edited
        _quarantine(paths, path, ino, f"not valid JSON: {exc}")
        return None
    except OSError as exc:
        log.warning("unreadable record %s skipped: %s", path, exc)
        return None
    problem = record_problem(rec, arm_id)
    if problem is not None:
        _quarantine(paths, path, ino, problem)
        return None
    return rec


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
    """:data:`COLUMNS` (always), the declared :data:`METRICS` present, then the rest sorted."""
    keys = set(keys)
    metrics = [k for k in METRICS if k in keys]
    return [*COLUMNS, *metrics, *sorted(keys - set(COLUMNS) - set(metrics))]


def _cast(df):
    """Give every declared column its :mod:`runner.schema` dtype (a task's own value of another
    type leaves that column as it is)."""
    for col in df.columns:
        if col in DTYPES:
            try:
                df[col] = df[col].astype(table_dtype(col))
            except (TypeError, ValueError):
                log.debug("column %s kept as %s", col, df[col].dtype)
    return df


def _held_out_at_best(rec: Mapping[str, Any]) -> dict[str, Any]:
    """``{"holdout_loss": ...}`` from the history's epoch ``best_epoch`` (the weights scored)
    for a record written before ``holdout_loss`` was a column; ``{}`` when it has one or
    cannot say."""
    if rec.get("holdout_loss") is not None or not isinstance(rec.get(HISTORY_KEY), list):
        return {}
    best = [e.get("holdout_loss") for e in rec[HISTORY_KEY]
            if isinstance(e, Mapping) and e.get("epoch") == rec.get("best_epoch")]
    return {"holdout_loss": best[0]} if best and best[0] is not None else {}


def complete_records(paths: OutputPaths, records: Mapping[str, Mapping[str, Any]]) -> dict:
    """``records`` completed where they predate a column: the training settings
    (:data:`PROVENANCE_SETTINGS`) from the directory's ``sweep.toml``, which planned each arm
    with them (:func:`runner.provenance.planned_settings`), and ``holdout_loss`` from the
    record's own history. A recorded value always stays."""
    from .provenance import planned_settings

    planned = None
    out = {}
    for arm_id, rec in records.items():
        fill = _held_out_at_best(rec)
        if any(k not in rec for k in PROVENANCE_SETTINGS):  # older than a column: plan once
            if planned is None:
                planned = planned_settings(paths.sweep_toml) if paths.sweep_toml.is_file() \
                    else {}
            fill |= {k: v for k, v in planned.get(arm_id, {}).items()
                     if v is not None and rec.get(k) is None}
        out[arm_id] = {**rec, **fill} if fill else rec
    return out


def records_frame(records: Iterable[Mapping[str, Any]]):
    """A DataFrame of ``records``: :data:`COLUMNS` first (missing values as NA), the declared
    metrics present, then the other keys sorted; every declared column with its fixed dtype
    (:mod:`runner.schema`); rows sorted by N, gridsize, nphotons, loss, seed."""
    import pandas as pd

    rows = [{k: v for k, v in r.items() if k != HISTORY_KEY} for r in records]
    keys: set[str] = set()
    for r in rows:
        keys.update(r)
    cols = _ordered_columns(keys)
    df = pd.DataFrame(rows, columns=cols)
    df = _cast(df)
    if not len(df):
        return df
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
    records = complete_records(paths, records)
    df = records_frame(records.values())
    history = history_frame(records.values())
    files = [(paths.metrics_parquet, _parquet_bytes(df)),
             (paths.metrics_csv, df.to_csv(index=False).encode())]
    if len(history):
        files += [(paths.history_parquet, _parquet_bytes(history)),
                  (paths.history_csv, history.to_csv(index=False).encode())]
    atomic_write_many(files)
    return df


def atomic_write_many(files: Iterable[tuple[Path, bytes]]) -> None:
    """Write several files so that they change together: every one is written in full to a
    temporary file first (a full disk fails here, leaving the old files untouched), then all
    are renamed into place (renames need no space)."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            path = Path(path)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".tmp-{path.name}.")
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), _MODE)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    for tmp, path in staged:
        os.replace(tmp, path)


def load_results(out_dir: str | Path):
    """The results table of the sweep in ``out_dir``: built from its records (the source of
    truth), else from ``metrics.parquet``. Raises FileNotFoundError if there is neither."""
    import pandas as pd

    paths = OutputPaths(out_dir)
    if not paths.root.is_dir():
        raise FileNotFoundError(f"{paths.root}: no such directory")
    if paths.records_dir.is_dir():
        return records_frame(complete_records(paths, read_records(paths)).values())
    if paths.metrics_parquet.is_file():
        return pd.read_parquet(paths.metrics_parquet)
    raise FileNotFoundError(f"{paths.root}: no records/ and no metrics.parquet; not a sweep output")
