"""A results table's series, and the choice among them that needs no ground truth.

A *series* is one line of the dose-response figure and one row of the aggregate pivots: the
arms of one ``N`` / gridsize with one loss and one value of each training setting the table
varies between arms (:data:`runner.schema.ARM_SETTINGS`, the ``[arms]`` lists beside loss and
seed: ``realspace_weight = [0, 0.3]``), over every dose and seed.

:func:`choose_by_holdout` picks, for each ``N`` / gridsize / dose / loss / seed, the arm
whose scored weights best predict the photons held out of the fit (least ``holdout_loss``,
one unit for every loss and prior) among the values of the varied settings: the prior's
weight as a scientist would choose it, from the data alone. Arms fitted to one dose and seed
share the held-out draw, so their ``holdout_loss`` compare.

Imports pandas only when called; the defaults come from :class:`ptycho.config.TrainingConfig`.
"""

from __future__ import annotations

from typing import Any

from .schema import ARM_SETTINGS

__all__ = ["varied_settings", "with_series", "choose_by_holdout", "CHOSEN"]

#: The series suffix of the arms :func:`choose_by_holdout` picked.
CHOSEN = "chosen by held-out NLL"


def _default(key: str) -> Any:
    from ptycho.config import TrainingConfig

    return getattr(TrainingConfig, key)


def _filled(df, key: str):
    """Column ``key``, a row without a value at the setting's default. A directory's table
    has them all (:func:`runner.store.load_results` takes what a record lacks from the
    ``sweep.toml`` that planned it); the default is the fallback for tables from elsewhere."""
    import pandas as pd

    if key not in df:
        return pd.Series(_default(key), index=df.index)
    return pd.to_numeric(df[key], errors="coerce").fillna(_default(key))


def varied_settings(df) -> list[str]:
    """The settings of :data:`ARM_SETTINGS` with more than one value among ``df``'s rows that
    share an ``N``, gridsize and dose (a setting that only differs between doses, as
    ``nepochs`` may when a study grew, does not split a line)."""
    if not len(df):
        return []
    out = []
    for key in ARM_SETTINGS:
        if key not in df:
            continue
        values = df[["N", "gridsize", "nphotons"]].assign(_v=_filled(df, key))
        if (values.groupby(["N", "gridsize", "nphotons"])["_v"].nunique() > 1).any():
            out.append(key)
    return out


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def with_series(df) -> tuple[Any, list[str]]:
    """``(table, varied)``: a copy of ``df`` whose varied settings (:func:`varied_settings`)
    are filled where missing and with a ``series`` column, the loss and those settings'
    values (``"nll_huber, realspace_weight 0.3"``; the loss alone when none varies)."""
    df = df.copy()
    varied = varied_settings(df)
    series = df["loss"].astype(str)
    for key in varied:
        df[key] = _filled(df, key)
        series = series + f", {key} " + df[key].map(_fmt)
    df["series"] = series
    return df, varied


def choose_by_holdout(df, varied: list[str] | None = None):
    """The ``ok`` arms with the least ``holdout_loss`` per ``N`` / gridsize / dose / loss /
    seed over the values of the ``varied`` settings (default :func:`varied_settings`), their
    ``series`` set to ``"<loss>, chosen by held-out NLL"`` (per held-out fraction, named in
    the series, when ``holdout`` itself varies). A point with one ``ok`` arm, or one without
    a ``holdout_loss``, has no choice (not one among the others). Empty when nothing varies
    or no arm has a ``holdout_loss``."""
    import pandas as pd

    table, found = with_series(df)
    varied = found if varied is None else varied
    if not varied or "holdout_loss" not in table:
        return table.iloc[0:0]
    ok = table[table["status"] == "ok"] if "status" in table else table
    # held-out NLLs compare only over one held-out draw: never across fractions
    keys = ["N", "gridsize", "nphotons", "loss", "seed", *(["holdout"] if "holdout" in varied
                                                            else [])]
    ok = ok.assign(holdout_loss=pd.to_numeric(ok["holdout_loss"], errors="coerce"))
    ok = ok[ok.groupby(keys)["holdout_loss"].transform(lambda v: len(v) > 1
                                                         and v.notna().all())]
    if not len(ok):
        return ok
    best = ok.loc[ok.groupby(keys)["holdout_loss"].idxmin()]
    fraction = (", holdout " + best["holdout"].map(_fmt)) if "holdout" in keys[5:] else ""
    return best.assign(series=best["loss"].astype(str) + fraction + ", " + CHOSEN)
