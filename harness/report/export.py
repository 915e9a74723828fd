"""The aggregated frame: one flat row per (suite, pair, strategy label), as pandas, CSV and Parquet.

Column names: ``<metric>_{mean,std,ci95,n}`` for every metric, ``gain_<baseline>_{mean,low,high,n}``
for the seed-paired gain of the primary metric, ``cost_<key>_{mean,std}`` for every cost figure,
``budget_<key>`` (epochs, steps, examples_seen, optimizer, lr, precision; ``budget_closed_form``: a
closed-form fit's solver and chosen C, JSON) and ``budget_differs``,
``converged`` / ``val_rise``, ``search_chosen`` (JSON) / ``search_edge``, plus identity, the data
``variant``, seed counts, rank, ``tied_with_best``, ``pareto`` and the parameter counts.
Missing values are empty (NaN / null), never zero.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from harness.errors import HarnessError
from harness.report.aggregate import COST_KEYS, GAIN_BASELINES, SCALAR_METRICS, Row

if TYPE_CHECKING:
    from harness.records import Record, RecordSummary

NAN = math.nan


def flat(r: Row) -> dict[str, Any]:
    """One row as a flat dict of scalars (NaN for missing)."""
    d: dict[str, Any] = {
        "suite": r.suite, "smoke": r.smoke, "pair": r.pair, "label": r.label, "strategy": r.strategy,
        "task": r.task, "primary": r.primary, "n_ok": r.n_ok, "n_failed": r.n_failed,
        "rank": r.rank, "best": r.best, "tied_with_best": r.tied, "pareto": r.pareto,
        "trainable_params": r.params[0], "total_params": r.params[1], "variant": r.variant,
        "converged": False if r.collapsed else None if r.convergence is None and r.adequacy is None else not r.still_rising,
        "collapsed_seeds": ",".join(str(s) for s in r.collapsed),
        "val_rise": NAN if r.convergence is None else r.convergence.rise,
        "budget_differs": ",".join(r.budget_differs),
        "search_chosen": json.dumps((r.search or {}).get("chosen"), sort_keys=True) if r.search else None,
        "search_edge": ",".join((r.search or {}).get("edge") or []),
    }
    for k in ("epochs", "steps", "examples_seen", "optimizer", "lr", "precision"):
        v = r.budget.get(k)
        d[f"budget_{k}"] = v if v is not None else (None if k in ("optimizer", "precision") else NAN)
    fit = r.budget.get("closed_form")
    d["budget_closed_form"] = json.dumps(fit, sort_keys=True) if fit else None
    for m in SCALAR_METRICS:
        s = r.metrics.get(m)
        d[f"{m}_mean"], d[f"{m}_std"] = (s.mean, s.std) if s else (NAN, NAN)
        d[f"{m}_ci95"], d[f"{m}_n"] = (s.ci95, s.n) if s else (NAN, 0)
    for b in GAIN_BASELINES:
        g = r.gains.get(b)
        d[f"gain_{b}_mean"], d[f"gain_{b}_low"] = (g.mean, g.low) if g else (NAN, NAN)
        d[f"gain_{b}_high"], d[f"gain_{b}_n"] = (g.high, g.n) if g else (NAN, 0)
    for k in COST_KEYS:
        s = r.cost.get(k)
        d[f"cost_{k}_mean"], d[f"cost_{k}_std"] = (s.mean, s.std) if s else (NAN, NAN)
    return d


def frame(rows: list[Row]):
    """The aggregated rows as a pandas DataFrame (needs the ``report`` extra)."""
    try:
        import pandas as pd
    except ImportError as e:
        raise HarnessError("exports need pandas: pip install 'transfer-harness[report]'") from e
    df = pd.DataFrame([flat(r) for r in rows])
    for col in ("rank", "trainable_params", "total_params"):
        if col in df:
            df[col] = df[col].astype("Int64")  # whole numbers with missing values stay whole
    return df


def csv_bytes(df) -> bytes:
    return df.to_csv(index=False, float_format="%.10g").encode()


def parquet_bytes(df) -> bytes:
    try:
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise HarnessError("the Parquet export needs pyarrow: pip install 'transfer-harness[report]'") from e
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def write_csv(rows: list[Row], path: Path) -> Path:
    from harness.records import atomic_write_bytes

    atomic_write_bytes(path, csv_bytes(frame(rows)))
    return path


def write_parquet(rows: list[Row], path: Path) -> Path:
    from harness.records import atomic_write_bytes

    atomic_write_bytes(path, parquet_bytes(frame(rows)))
    return path


EXPORTS = ((".csv", csv_bytes), (".parquet", parquet_bytes))


def _tables(rows: list[Row], out: Path, assets: dict[str, dict[str, str]], exports: bool,
            sections: Sequence[str] = ()) -> tuple[dict[Path, bytes], list[str]]:
    """The markdown and the exports of ``rows`` as bytes per file, and warnings for the exports
    a missing library skips."""
    from harness.report.markdown import render

    files = {out: render(rows, assets=assets, sections=sections).encode()}
    warnings: list[str] = []
    df = None
    for suffix, encode in EXPORTS if exports else ():
        try:
            df = frame(rows) if df is None else df
            files[out.with_suffix(suffix)] = encode(df)
        except HarnessError as e:
            warnings.append(f"{suffix[1:]} export skipped: {e}")
    return files, warnings


def write_report(rows: list[Row], out: Path, plots: bool = True, exports: bool = True,
                 jobs: int | None = None, sections: Sequence[str] = ()) -> tuple[list[Path], list[str]]:
    """The whole report of one suite: ``out`` (markdown), its plots under ``<out stem>/`` linked
    relatively (drawn on ``jobs`` processes, default one per CPU), and ``<out stem>.csv`` /
    ``.parquet``. Returns the files written and warnings (a missing optional library skips its
    files with a warning; the markdown is always written).

    The tables are made while the plot workers draw and written, each atomically, only once every
    plot is drawn: a failed plot leaves no new markdown linking it, nor exports beside an old one."""
    from harness.records import atomic_write_bytes

    made: list[tuple[dict[Path, bytes], list[str]]] = []
    warnings: list[str] = []
    assets: dict[str, dict[str, str]] = {}
    if plots and importlib.util.find_spec("matplotlib") is None:
        warnings.append("plots skipped: matplotlib is not installed (pip install 'transfer-harness[report]')")
    elif plots:
        from harness.report.plots import plot_pairs

        try:
            assets = plot_pairs(rows, out.parent / out.stem, out.stem, workers=jobs,
                                meanwhile=lambda links: made.append(_tables(rows, out, links, exports, sections)))
        except ImportError as e:  # installed, but it (or a library it needs) does not import
            warnings.append(f"plots skipped: matplotlib does not import ({e})")
            assets, made = {}, []
    files, export_warnings = made[0] if made else _tables(rows, out, assets, exports, sections)
    for path, data in files.items():
        atomic_write_bytes(path, data)
    drawn = [out.parent / link for links in assets.values() for link in links.values()]
    return [out, *drawn, *list(files)[1:]], warnings + export_warnings


BASELINES = "baselines"  # results/baselines/<suite>/: committed records for `harness compare`


@overload
def scan_results(results: str | Path) -> tuple[list[RecordSummary], list[Path]]: ...
@overload
def scan_results(results: str | Path, model: type[Record]) -> tuple[list[Record], list[Path]]: ...
def scan_results(results: str | Path, model: type[RecordSummary] | None = None) -> tuple[list[Any], list[Path]]:
    """Records under ``results`` except a ``baselines/`` folder directly inside it: the committed
    baseline is the reference the nightly run is compared with, not more seeds of it. Pointing
    ``results`` at the baseline folder itself reads it as usual. Records are read as ``model``,
    by default :class:`~harness.records.RecordSummary` (a record whose provenance blocks are
    missing or malformed still counts; the regression gate reads whole ``RunRecord``s)."""
    from harness.records import CorruptRecord, RecordSummary, read_record, scan

    model = model or RecordSummary
    root = Path(results)
    if not (root / BASELINES).is_dir():
        return scan(root, model)
    records: list[RecordSummary] = []
    corrupt: list[Path] = []
    for child in sorted(root.iterdir()):
        if child.name == BASELINES or child.name.startswith("."):
            continue
        if child.is_dir():
            r, c = scan(child, model)
            records += r
            corrupt += c
        elif child.suffix == ".json":
            try:
                records.append(read_record(child, model))
            except CorruptRecord:
                corrupt.append(child)
    return records, corrupt
