"""The Python API: what the ``harness`` command does, as calls.

>>> from harness import api
>>> suite = api.load_suite("suites/quickstart.yaml", overrides=["defaults.epochs=1"])  # doctest: +SKIP
>>> outcome = api.run(suite, results_dir="results")                                     # doctest: +SKIP
>>> df = api.load_records("results")                                                    # doctest: +SKIP
>>> api.report("results")                                                               # doctest: +SKIP

The command line (:mod:`harness.cli`) parses arguments, calls these functions and prints what
they return: one code path. Nothing here changes the calling process (``harness run`` makes its
own process the harness's, :func:`harness.run.process.own_process`; a script that imports this
module is left as it was). Errors a user can fix raise :class:`~harness.errors.HarnessError`
(a bad suite: :class:`~harness.errors.ConfigError`, with every issue).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import HarnessError

if TYPE_CHECKING:
    import pandas as pd

    from harness.config.schema import SuiteSpec
    from harness.executors.base import Outcome
    from harness.plan import RunSpec
    from harness.predictions import Rescoring
    from harness.records import RunRecord
    from harness.run.options import ExecOptions
    from harness.run.progress import Progress

REGISTRIES = ("sources", "targets", "strategies", "metrics", "tasks")


def load_suite(path: str | Path, overrides: Sequence[str] = ()) -> SuiteSpec:
    """Load and check a suite file, with ``overrides`` (``"defaults.epochs=5"``,
    ``"pairs[0].train.lr=1e-4"``: the ``--set`` texts) applied first and checked as the file is;
    raises :class:`~harness.errors.ConfigError` with every issue."""
    from harness.suite import load_suite as load

    return load(path, overrides)


def plan(suite: SuiteSpec | str | Path, smoke: bool = False, only: str | None = None) -> list[RunSpec]:
    """The suite's plan: every run (search trials, finals, aux runs) in dependency order; with
    ``only`` (a glob on run_id or ``pair/label``), the matching runs and every run they need."""
    from harness.executors.base import select
    from harness.plan import expand

    spec = load_suite(suite) if isinstance(suite, str | Path) else suite
    runs = select(expand(spec, smoke=smoke), only)
    if not runs:
        raise HarnessError(f"only={only!r} matches no run of suite {spec.suite!r}")
    return runs


@dataclass(frozen=True)
class ExecutorSettings:
    """How the ``pool`` and ``ray`` executors place runs (``harness run --workers …``)."""

    workers: int = 2  # pool: worker processes
    devices: tuple[str, ...] | None = None  # pool: the devices workers are pinned to, in turn
    threads: int | None = None  # pool: CPU threads per worker (default: CPUs / workers)
    address: str | None = None  # ray: the cluster to join (default: $RAY_ADDRESS, else a local instance)
    cpus_per_run: int = 1  # ray: CPU slots of a run that uses no GPU
    retries: int = 1  # pool, ray: restarts of a run lost with its worker before it is recorded as failed
    owned: bool = False  # ray: the driver is the harness's own process (the CLI), so its tasks are too


def exec_options(results_dir: str | Path = "results", cache_dir: str | Path | None = None,
                 data_dir: str | Path | None = None, record_hostname: bool = False,
                 show_progress: bool = False) -> ExecOptions:
    """The options every run gets: absolute paths (a worker of another executor, a Ray task on
    another node, may not share this working directory); the cache defaults to
    :func:`harness.cache.default_cache_dir`, outside the results."""
    from harness.cache import default_cache_dir
    from harness.run.options import ExecOptions

    return ExecOptions(cache_dir=Path(cache_dir or default_cache_dir()).expanduser().resolve(),
                       show_progress=show_progress, results_dir=Path(results_dir).expanduser().resolve(),
                       data_dir=Path(data_dir).expanduser().resolve() if data_dir else None,
                       record_hostname=record_hostname)


def run(suite_or_plan: SuiteSpec | Sequence[RunSpec] | str | Path,
        executor: Literal["local", "pool", "ray"] = "local", results_dir: str | Path = "results", *,
        smoke: bool = False, only: str | None = None, options: ExecOptions | None = None,
        settings: ExecutorSettings | None = None, retry_failed: bool = False, wait: bool = False,
        on_record: Callable[[RunRecord], None] | None = None, progress: Progress | None = None) -> Outcome:
    """Execute a suite (a file, a loaded suite, or a plan from :func:`plan`) and write a record
    per run under ``results_dir/<suite>[-smoke]/``; runs that already have an ok record there are
    skipped. ``options``: the cache, data root and record settings (:func:`exec_options`; its
    results directory is ``results_dir``'s); ``settings``: the pool's and Ray's placement.
    ``on_record`` sees each record as it is written; ``progress`` says what happens while it runs
    (default: the bar of runs when ``options.show_progress``; ``Progress(lines=True)`` adds the
    plan's first line and a line per run start and end, as the CLI prints). Returns the records made and the run_ids
    skipped; a failed run is a record with status ``failed``, not an exception."""
    from dataclasses import replace

    from harness.executors.base import run_plan
    from harness.records import suite_dir

    if isinstance(suite_or_plan, str | Path) or not isinstance(suite_or_plan, Sequence):
        runs = plan(suite_or_plan, smoke=smoke, only=only)
    else:
        runs = list(suite_or_plan)
        if not runs:
            raise HarnessError("the plan is empty: nothing to run")
    options = exec_options(results_dir) if options is None else \
        replace(options, results_dir=Path(results_dir).expanduser().resolve())
    directory = suite_dir(results_dir, runs[0].suite, runs[0].smoke)
    return run_plan(runs, directory, options, executor=make_executor(executor, options, settings or ExecutorSettings()),
                    retry_failed=retry_failed, wait=wait, on_record=on_record, progress=progress)


def make_executor(name: str, options: ExecOptions, settings: ExecutorSettings):
    """The executor ``name`` names (None: the driver's in-process default, ``local``)."""
    if name == "local":
        return None
    if name == "pool":
        from harness.executors.pool import PoolExecutor

        return PoolExecutor(options, workers=settings.workers, devices=list(settings.devices) if settings.devices else None,
                            threads=settings.threads, retries=settings.retries)
    if name == "ray":
        from harness.executors.ray_executor import RayExecutor

        return RayExecutor(options, address=settings.address, cpus_per_run=settings.cpus_per_run,
                           retries=settings.retries, owned=settings.owned)
    raise HarnessError(f"unknown executor {name!r}: local, pool or ray")


RECORD_COLUMNS = ("run_id", "suite", "pair", "strategy", "label", "seed", "smoke", "role", "status", "task",
                  "primary_metric", "started_at", "finished_at")


def load_records(results_dir: str | Path = "results", suite: str | None = None) -> pd.DataFrame:
    """Every run record under ``results_dir`` (but a committed ``baselines/`` folder) as a pandas
    DataFrame, one row per record: its identity and status (:data:`RECORD_COLUMNS`), ``primary``
    (the value of its primary metric), each scalar metric as ``metric.<name>`` and each scalar
    cost figure as ``cost.<name>``; ``suite`` keeps one suite. Corrupt files are left out (the
    report warns of them)."""
    try:
        import pandas as pd
    except ImportError as e:
        raise HarnessError("load_records needs pandas: pip install 'transfer-harness[report]'") from e
    from harness.report.export import scan_results

    records, _ = scan_results(results_dir)
    rows = []
    for r in records:
        if suite is not None and r.suite != suite:
            continue
        row: dict[str, Any] = {k: getattr(r, k) for k in RECORD_COLUMNS}
        row["primary"] = r.metrics.get(r.primary_metric) if r.primary_metric else None
        row.update({f"metric.{k}": v for k, v in r.metrics.items() if _scalar(v)})
        row.update({f"cost.{k}": v for k, v in r.cost.items() if _scalar(v)})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else [*RECORD_COLUMNS, "primary"])


def _scalar(v: Any) -> bool:
    return isinstance(v, int | float | str | bool) or v is None


@dataclass(frozen=True)
class Written:
    """One report :func:`report` wrote: the markdown, its HTML page, the other files, and warnings."""

    suite: str
    smoke: bool
    markdown: Path
    html: Path | None
    also: tuple[Path, ...]
    warnings: tuple[str, ...]


def report(results_dir: str | Path = "results", out: str | Path | None = None, *, reports_dir: str | Path = "reports",
           suite: str | None = None, plots: bool = True, exports: bool = True, html: bool = False,
           jobs: int | None = None, on_corrupt: Callable[[Path], None] | None = None,
           compare_to: str | Path | None = None, ci: Literal["bootstrap", "seeds", "t"] = "bootstrap") -> list[Written]:
    """Write the leaderboard of each suite under ``results_dir`` (``suite``: only that one; its
    smoke results are ``<suite>-smoke``) to ``reports_dir/<suite>.md`` — or to ``out`` when the
    records hold one suite — with its plots and CSV/Parquet exports unless turned off, and an
    HTML page beside it with ``html``. ``on_corrupt`` is told of each unreadable record skipped.
    ``compare_to``: a reference report (its ``.csv``/``.parquet``, the markdown beside them, or a
    folder of them such as ``reports/reference``): each cell is shown beside it with a verdict.
    ``ci="bootstrap"`` (the default): cells whose every seed kept its predictions get CIs and ties
    with the best from a bootstrap over seeds and test examples (:mod:`harness.report.evidence`);
    the others fall back to Student's t over seeds, and the report's header names them.
    ``ci="seeds"`` (or its older name ``"t"``): Student's t over seeds for every cell."""
    from harness.report.aggregate import aggregate
    from harness.report.export import scan_results, write_report
    from harness.report.transferability import read as read_scores
    from harness.report.transferability import render_section

    records, corrupt = scan_results(results_dir)  # results/baselines/ is the reference, not more seeds
    for p in corrupt:
        if on_corrupt is not None:
            on_corrupt(p)
    if suite:  # the suite's name, or its smoke results' (`domain-smoke`, as the directory and report are named)
        smoke = suite.endswith("-smoke")
        name = suite.removesuffix("-smoke") if smoke else suite
        records = [r for r in records if r.suite == name and (r.smoke or not smoke)]
    if not records:
        raise HarnessError(f"no run records under {results_dir}" + (f" for suite {suite!r}" if suite else ""))
    groups: dict[tuple, list] = {}
    for row in aggregate(records):
        groups.setdefault((row.suite, row.smoke), []).append(row)
    if out and len(groups) > 1:
        names = ", ".join(f"{s}{'-smoke' if k else ''}" for s, k in groups)
        raise HarnessError(f"out (--out) names one file but the records hold several suites ({names}); "
                           "choose one with suite (--suite)")
    written = []
    if ci not in ("bootstrap", "seeds", "t"):
        raise HarnessError(f"ci must be 'bootstrap' or 'seeds' (got {ci!r})")
    from harness.report.evidence import bootstrap_rows, budget_checks

    for group in groups.values():
        if ci == "bootstrap":
            bootstrap_rows(group, records, results_dir)
        budget_checks(group, records, results_dir)  # the cells that ran one (`budget_check: true`)
    for (name, smoke), group in sorted(groups.items()):
        stem = f"{name}{'-smoke' if smoke else ''}"
        path = Path(out) if out else Path(reports_dir) / f"{stem}.md"
        scores = read_scores(Path(results_dir) / stem)  # `harness rank`'s
        sections = render_section(group, scores) if scores else []
        if compare_to:  # this report's cells beside a committed (or any earlier) report's
            from harness.report.reference import reference_section

            sections = [*sections, *reference_section(group, compare_to)]
        files, warnings = write_report(group, path, plots=plots, exports=exports, jobs=jobs, sections=sections)
        page = None
        if html:  # the browsable page beside the markdown
            from harness.report.html import write_html

            page = write_html(group, path.with_suffix(".html"))
        written.append(Written(name, smoke, path, page, tuple(files[1:]), tuple(warnings)))
    return written


def rescore(results_dir: str | Path = "results", *, suite: str | None = None, metrics: Sequence[str] = (),
            split: str = "test", write: bool = False) -> Rescoring:
    """Recompute ``metrics`` (registered names; default: each run's task's) on ``split`` from the
    per-example predictions kept beside the records under ``results_dir``, without training
    (:func:`harness.predictions.rescore`): a missing or changed predictions file is skipped and
    named in ``skipped``; ``write`` keeps the values in each record's ``predictions.rescored``."""
    from harness.predictions import rescore as rescore_records

    return rescore_records(results_dir, suite, metrics, split, write)


def registry(what: Literal["sources", "targets", "strategies", "metrics", "tasks"]) -> list[dict[str, str]]:
    """What a registry holds: each entry's ``name``, ``description`` and ``tag`` (``[unlabeled]``:
    a strategy that needs the target domain's unlabeled data; ``[domains]``: a target that offers
    other domains; else empty)."""
    from harness.registry import METRICS, SOURCES, STRATEGIES, TARGETS, TASKS

    if what not in REGISTRIES:
        raise HarnessError(f"no registry {what!r}: {', '.join(REGISTRIES)}")
    reg = {"sources": SOURCES, "targets": TARGETS, "strategies": STRATEGIES, "metrics": METRICS, "tasks": TASKS}[what]
    return [{"name": e.name, "description": e.description, "tag": _tag(what, e.obj)} for e in reg.entries()]


def _tag(what: str, obj: Any) -> str:
    if what == "strategies":
        return "[unlabeled]" if getattr(obj, "uses_unlabeled", False) else ""
    if what == "targets":
        fields = getattr(getattr(obj, "Params", None), "model_fields", {})
        return "[domains]" if "unlabeled" in fields else ""
    return ""
