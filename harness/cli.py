"""``harness`` command line: validate | plan | run | report | compare | ls.

Thin: each subcommand parses arguments and calls one library function. Errors the user can
fix print one clear message (no traceback) and exit non-zero: 2 for bad input, 1 for failed
runs, 3 when the results directory is in use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from harness import __version__
from harness.errors import ConfigError, HarnessError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _load(path: str, overrides: Sequence[str] = ()):
    from harness.api import load_suite

    return load_suite(path, overrides)


def cmd_validate(args) -> int:
    issues = []
    for f in args.files:
        try:
            spec = _load(f, args.set)
        except ConfigError as e:
            issues += e.issues
        else:
            for w in spec.warnings:
                print(f"warning: {w}", file=sys.stderr)
    if issues:
        for i in issues:
            print(i, file=sys.stderr)
        print(f"{len(issues)} error(s) in {len({i.file for i in issues})} file(s)", file=sys.stderr)
        return 2
    print("ok")
    return 0


def describe_node(r) -> str:
    """A plan line's last column: the cell, and what the run waits for."""
    what = f"{r.pair} / {r.label} / {r.seed}"
    if r.role == "trial":
        point = ", ".join(f"{k}={v}" for k, v in r.point.items()) if r.point else "drawn from the trials before it"
        what += f"  trial #{r.trial_index}: {point}"
    elif r.search is not None:
        grid, by = ", ".join(f"{k} ∈ {v}" for k, v in r.search.space.items()), r.search.select_by
        what += f"  final: best of {r.search.n_points()} ({grid}) " + ("on val" if by == "oracle" else f"by {by}")
    if r.role == "aux":
        what += f"  aux: budget check, {r.budget_check}× the epochs" if r.budget_check else "  aux"
    for name, dep in r.inputs.items():
        what += f"  ← {name} {dep}"
    return what


def cmd_plan(args) -> int:
    from harness.api import plan
    from harness.plan import count

    runs = plan(_load(args.file, args.set), smoke=args.smoke)
    if args.json:
        print(json.dumps([{"run_id": r.run_id, "pair": r.pair, "strategy": r.strategy, "label": r.label,
                           "seed": r.seed, "role": r.role, "depends_on": list(r.depends_on), "inputs": dict(r.inputs),
                           "config": r.config()} for r in runs], indent=2))  # config: overrides included
        return 0
    width = max(len(r.run_id) for r in runs)
    print(f"{'run_id':<{width}}  pair / strategy / seed")
    for r in runs:
        print(f"{r.run_id:<{width}}  {describe_node(r)}")
    n = count(runs)
    finals = [r for r in runs if r.role == "final"]
    print(f"{len(runs)} runs: {n['final']} finals ({len({(r.pair, r.label) for r in finals})} cells of "
          f"{len({r.pair for r in finals})} pairs × {len({r.label for r in finals})} strategies, "
          f"× {len({r.seed for r in finals})} seeds), "
          f"{n['trial']} search trials, {n['aux']} aux (teachers no cell names, pretrained sources, budget checks)")
    return 0


def exec_options(args, data_dir: str | None = None):
    """The execution options of ``run`` and ``rank`` from their arguments."""
    from harness.api import exec_options as options

    return options(args.results, args.cache_dir, data_dir, record_hostname=getattr(args, "record_hostname", False),
                   show_progress=not args.no_progress and sys.stderr.isatty())


def cmd_run(args) -> int:
    # first: a bad file (or --set) is refused before torch and the executors are imported
    suite = _load(args.file, getattr(args, "set", ()))

    from harness import api
    from harness.records import suite_dir
    from harness.run.process import own_process
    from harness.run.progress import Progress

    for w in suite.warnings:
        print(f"warning: {w}", file=sys.stderr)
    own_process()  # the CLI is the harness's own process: its speed settings may apply here
    try:
        runs = api.plan(suite, smoke=args.smoke, only=args.only)
    except HarnessError:
        if not args.only:
            raise
        raise HarnessError(f"--only {args.only!r} matches no run; see `harness plan {args.file}`") from None
    directory = suite_dir(args.results, suite.suite, args.smoke)
    # where targets find (or download) datasets: in the options every run gets, recorded with its env
    options = exec_options(args, args.data_dir)

    devices = tuple(d.strip() for d in args.devices.split(",")) if args.devices else None
    settings = api.ExecutorSettings(workers=args.workers, devices=devices, threads=args.threads, address=args.address,
                                    cpus_per_run=args.cpus_per_run, retries=args.retries, owned=True)
    # the plan's first line, and a line as each run starts and ends, on stderr: above the bars on a
    # terminal, and all a log (CI, nohup) gets
    progress = Progress(bars=options.show_progress, lines=True)
    outcome = api.run(runs, args.executor, args.results, options=options, settings=settings,
                      retry_failed=args.retry_failed, wait=args.wait, progress=progress)
    bad = [r for r in outcome.done if r.status != "ok"]
    print(f"{len(outcome.done)} run(s) executed, {len(outcome.skipped)} already done (skipped), {len(bad)} failed; "
          f"records in {directory}")
    print(f"leaderboard: harness report --results {args.results}")
    return 1 if bad else 0


def cmd_rank(args) -> int:
    suite = _load(args.file)  # first: a bad file is refused before torch is imported

    from harness.plan import expand
    from harness.records import suite_dir
    from harness.report.transferability import write
    from harness.run.execute import pick_device
    from harness.run.process import own_process
    from harness.run.transferability import pretrain_runs, probe_spec, rank_suite, render

    own_process()
    runs = expand(suite, smoke=args.smoke)
    options = exec_options(args)

    def progress(r):
        took = f"features {r.feature_s:.1f} s{' (cached)' if r.feature_cache_hit else ''}, scores {r.score_s:.2f} s"
        print(f"scored {r.pair}: n={r.n}, dim={r.dim}; {took}" if r.n else f"not scored {r.pair}: {r.skipped}",
              file=sys.stderr, flush=True)

    pretrains = pretrain_runs(runs, [probe_spec(runs, p) for p in dict.fromkeys(r.pair for r in runs if r.role == "final")])
    failed: dict[str, str] = {}
    if pretrains:  # training a `pretrain:` source is part of making it: recorded, and reused by `harness run`
        from harness.executors.base import run_plan
        from harness.plan import PRETRAIN_EXPORT

        directory = suite_dir(args.results, suite.suite, args.smoke)
        print(f"pretraining {sum(PRETRAIN_EXPORT in r.exports for r in pretrains)} source(s) first "
              f"({len(pretrains)} run(s), those on record skipped)", file=sys.stderr, flush=True)
        done = run_plan(pretrains, directory, options)
        failed = {r.run_id: f"{r.status}: {(r.error or {}).get('message', '')[:300]}"
                  for r in done.done if r.status != "ok"}
        for run_id, why in failed.items():
            print(f"pretrain run {run_id} {why}", file=sys.stderr)
    results = rank_suite(runs, options.cache_dir, pick_device(args.device), options.show_progress, on_pair=progress,
                         failed=failed)
    print(render(results))
    print(f"scores in {write(results, suite_dir(args.results, suite.suite, args.smoke), suite.suite)}; "
          f"`harness report` sets them beside the measured results once the suite has run")
    return 1 if failed else 0


def cmd_report(args) -> int:
    from harness.api import report

    written = report(args.results, args.out, reports_dir=args.reports, suite=args.suite, plots=not args.no_plots,
                     exports=not args.no_export, html=args.html, jobs=args.jobs, compare_to=args.compare_to, ci=args.ci,
                     on_corrupt=lambda p: print(f"warning: skipping corrupt record {p}", file=sys.stderr))
    for w in written:
        for warning in w.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(w.markdown)  # stdout: the markdown path only (scripts read it); the rest goes to stderr
        if w.html is not None:
            print(f"  html: {w.html}", file=sys.stderr)
        if w.also:
            print(f"  also wrote {len(w.also)} file(s): {', '.join(str(p) for p in w.also)}", file=sys.stderr)
    return 0


def cmd_rescore(args) -> int:
    from harness.api import rescore

    found = rescore(args.results, suite=args.suite, metrics=args.metric or (), split=args.split, write=args.write)
    for why in found.skipped:
        print(f"warning: not rescored: {why}", file=sys.stderr)
    if not found.rows:
        print(f"no predictions to rescore under {args.results}", file=sys.stderr)
        return 1 if found.skipped else 0
    print("| run | split | metric | rescored | recorded | same |\n|---|---|---|---|---|---|")
    for r in found.rows:
        recorded, same = ("—", "—") if r.recorded is None else (f"{r.recorded:.6g}", "yes" if r.recorded == r.value
                                                                 else "no")  # exactly, not as printed
        print(f"| {r.run_id} | {r.split} | {r.metric} | {r.value:.6g} | {recorded} | {same} |")
    if found.written:
        print(f"kept the values in {len(found.written)} record(s) (predictions.rescored)", file=sys.stderr)
    return 0


def cmd_compare(args) -> int:
    from harness.report.compare import GateOptions, compare_dirs, exit_code, render_markdown, render_text

    gate = "off" if args.max_slowdown is None or args.max_slowdown < 0 else args.cost_gate
    options = GateOptions(tolerance=args.tolerance, k=args.k, cost_key=args.cost_key,
                          max_slowdown=None if gate == "off" else args.max_slowdown)
    cmp = compare_dirs(args.baseline, args.results, options, suite=args.suite, exact=args.exact == "auto")
    print(render_text(cmp, gate), end="")
    if args.out:
        from harness.records import atomic_write_bytes

        atomic_write_bytes(Path(args.out), render_markdown(cmp, gate).encode())
        print(f"written: {args.out}", file=sys.stderr)
    return exit_code(cmp, gate)


def cmd_baseline(args) -> int:
    """Re-baseline (:func:`harness.baseline.rebaseline`): the fresh run is ``harness run`` with this
    command's execution options."""
    from harness.baseline import rebaseline

    def run_suite(results: Path, cache: Path) -> int:
        # `harness run FILE --results RESULTS --cache-dir CACHE` with this command's execution options;
        # every other option of `run` keeps its default (a fresh run, its own empty cache)
        run_args = parser().parse_args(["run", "--results", str(results), "--cache-dir", str(cache), "--", args.file])
        for key in (vars(run_args).keys() & vars(args).keys()) - {"command", "fn", "file"}:
            setattr(run_args, key, getattr(args, key))
        return cmd_run(run_args)

    return rebaseline(args.file, Path(args.baseline), run_suite)


def cmd_ls(args) -> int:
    from harness.api import registry

    entries = registry(args.what)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    width = max(len(e["name"]) for e in entries)
    tag_width = max(len(e["tag"]) for e in entries)
    for e in entries:
        tag = f"{e['tag']:<{tag_width}}  " if tag_width else ""
        print(f"{e['name']:<{width}}  {tag}{e['description']}")
    if tag_width:
        print(f"\n{LS_TAGS[args.what]}")
    return 0


LS_TAGS = {"strategies": "[unlabeled]: needs the target domain's unlabeled data (`unlabeled:` on the pair's target; "
                         "`harness validate` says when a pair has none)",
           "targets": "[domains]: offers other domains (`unlabeled:`, `eval_domain:` on the target; "
                      "docs/strategies.md, Domain adaptation)"}


def cmd_export(args) -> int:
    from harness.records import RunRecord
    from harness.report.export import scan_results
    from harness.report.trackers import export_mlflow, export_tensorboard, export_wandb, select

    records, corrupt = scan_results(args.results, RunRecord)
    for p in corrupt:
        print(f"warning: skipping corrupt record {p}", file=sys.stderr)
    chosen = select(records, args.suite)
    if not chosen:
        raise HarnessError(f"no run records under {args.results}" + (f" for suite {args.suite!r}" if args.suite else ""))
    if args.tracker == "mlflow":
        counts = export_mlflow(chosen, args.tracking_uri, args.experiment)
    elif args.tracker == "wandb":
        counts = export_wandb(chosen, args.dir, args.project)
    else:
        counts = export_tensorboard(chosen, args.logdir)
    print(f"{args.tracker}: {counts.logged} run(s) logged ({counts.replaced} replacing older records), "
          f"{counts.skipped} already exported")
    return 0


def cmd_schema(args) -> int:
    from harness.suite_schema import schema_text

    if args.out:
        Path(args.out).write_text(schema_text(), encoding="utf-8")
        print(args.out)
    else:
        sys.stdout.write(schema_text())
    return 0


def execution_options(sp) -> None:
    """Where and how a suite's runs execute (``run`` and ``baseline``)."""
    sp.add_argument("--data-dir", help="datasets root: CIFAR etc. are downloaded here on first use "
                    "(default: $HARNESS_DATA_DIR, else $XDG_CACHE_HOME/harness/data, else ~/.cache/harness/data)")
    sp.add_argument("--executor", choices=["local", "pool", "ray"], default="local",
                    help="local: one run at a time in this process (default); pool: --workers processes on this "
                    "machine; ray: one Ray task per run (pip install 'transfer-harness[ray]'; docs/scaling.md)")
    sp.add_argument("--workers", type=_positive_int, default=2, help="pool: worker processes (default 2)")
    sp.add_argument("--devices", help="pool: devices the workers are pinned to, in turn (cpu, or cuda:0,cuda:1,…)")
    sp.add_argument("--threads", type=_positive_int, help="pool: CPU threads per worker (default: CPUs / workers)")
    sp.add_argument("--address", help="ray: the cluster to join (auto, ray://host:10001; default: $RAY_ADDRESS, "
                    "else a new local instance)")
    sp.add_argument("--cpus-per-run", type=_positive_int, default=1,
                    help="ray: CPU slots (and torch threads) of a run that uses no GPU (default 1)")
    sp.add_argument("--retries", type=int, default=1, choices=range(0, 11), metavar="N",
                    help="pool, ray: times a run lost with its worker (killed, out of memory, node lost) is "
                    "started again before it is recorded as failed (default 1)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")
    sp.add_argument("--record-hostname", action="store_true", help="records name the machine they ran on "
                    "(default: a salted hash of its name, env.hostname_hash, since records are meant to be shared)")


CACHE_DEFAULT = "$HARNESS_CACHE, else $XDG_CACHE_HOME/harness, else ~/.cache/harness"


def overrides_option(sp) -> None:
    """``--set KEY.PATH=VALUE``: a suite value changed without editing the file (``validate``,
    ``plan``, ``run``)."""
    sp.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                    help="change one value of the suite before it is checked, e.g. --set defaults.epochs=5 --set "
                    "pairs[0].train.lr=1e-4 (repeatable; a YAML value; checked as the file is; recorded in each "
                    "run's config.overrides)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness", description="Benchmark transfer-learning strategies: accuracy and cost over seeds.")
    p.add_argument("--version", action="version", version=f"harness {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check suite files; print every error as FILE:LINE: key: message")
    v.add_argument("files", nargs="+", metavar="FILE")
    overrides_option(v)
    v.set_defaults(fn=cmd_validate)

    pl = sub.add_parser("plan", help="show the expanded pair × strategy × seed matrix with run_ids")
    pl.add_argument("file", metavar="FILE")
    pl.add_argument("--json", action="store_true", help="machine-readable, with each resolved config")
    pl.add_argument("--smoke", action="store_true", help="plan the smoke variant")
    overrides_option(pl)
    pl.set_defaults(fn=cmd_plan)

    r = sub.add_parser("run", help="execute a suite; reruns skip run_ids that already have an ok record")
    r.add_argument("file", metavar="FILE")
    r.add_argument("--results", default="results", help="results root (default: results/)")
    r.add_argument("--only", metavar="GLOB", help="run only run_ids (or pair/label) matching GLOB")
    r.add_argument("--smoke", action="store_true", help="a few steps per cell to check the suite end to end")
    r.add_argument("--retry-failed", action="store_true", help="rerun only runs whose record is failed/timeout")
    r.add_argument("--cache-dir", help=f"feature cache (default: {CACHE_DEFAULT})")
    r.add_argument("--wait", action="store_true", help="queue behind another run using the same results dir")
    overrides_option(r)
    execution_options(r)
    r.set_defaults(fn=cmd_run)

    b = sub.add_parser("baseline", help="re-baseline: run a suite afresh, show what moved, and replace the "
                       "baseline's records (only when every run is ok)")
    b.add_argument("file", metavar="FILE")
    b.add_argument("--baseline", required=True, metavar="DIR", help="the baseline directory of records to replace "
                   "(e.g. results/baselines/nightly)")
    execution_options(b)
    b.set_defaults(fn=cmd_baseline)

    rk = sub.add_parser("rank", help="transferability scores (LogME, H-score, GBC, LEEP, NCE) of every source "
                        "for each target, before any training")
    rk.add_argument("file", metavar="FILE")
    rk.add_argument("--results", default="results", help="results root: the scores go beside the suite's records")
    rk.add_argument("--smoke", action="store_true", help="on the smoke run's data limits")
    rk.add_argument("--cache-dir", help=f"feature cache, shared with the linear probe (default: {CACHE_DEFAULT})")
    rk.add_argument("--device", default="auto", help="auto (CUDA when there is one), cpu, cuda:N")
    rk.add_argument("--no-progress", action="store_true", help="no progress bars")
    rk.set_defaults(fn=cmd_rank)

    rep = sub.add_parser("report", help="write the markdown leaderboard of the records")
    rep.add_argument("--results", default="results", help="results root to read (default: results/)")
    rep.add_argument("--out", help="output file (default: REPORTS/<suite>.md)")
    rep.add_argument("--reports", default="reports", help="output directory (default: reports/)")
    rep.add_argument("--suite", help="only this suite")
    rep.add_argument("--no-plots", action="store_true", help="skip the per-pair Pareto and learning-curve PNGs")
    rep.add_argument("--no-export", action="store_true", help="skip the CSV and Parquet exports")
    rep.add_argument("--html", action="store_true", help="also write a self-contained HTML page per suite "
                     "(REPORTS/<suite>.html: sortable, filterable tables and a Pareto plot per pair; works offline)")
    rep.add_argument("--compare-to", metavar="REFERENCE", help="add a section with each cell beside a reference "
                     "report's and a verdict (within its uncertainty, above, below, missing): the reference's "
                     "<suite>.csv, the markdown beside it, or a folder of them, e.g. reports/reference")
    rep.add_argument("--ci", choices=["bootstrap", "seeds", "t"], default="bootstrap", help="bootstrap (default): over "
                     "seeds and test examples, from the predictions kept beside the records (a cell without them falls "
                     "back to seeds; the header says so); seeds (or t, its older name): Student's t over seeds only")
    rep.add_argument("-j", "--jobs", type=_positive_int, metavar="N",
                     help="processes drawing the plots (default: one per CPU; 1 = in this process)")
    rep.set_defaults(fn=cmd_report)

    rs = sub.add_parser("rescore", help="recompute metrics from the per-example predictions kept beside the "
                        "records, without training (any registered metric: `harness ls metrics`)")
    rs.add_argument("--results", default="results", help="results root to read (default: results/)")
    rs.add_argument("--suite", help="only this suite")
    rs.add_argument("--metric", action="append", metavar="NAME", help="a registered metric, repeatable (default: "
                    "each run's task's metrics); another seqeval mode is another name: seqeval_conlleval")
    rs.add_argument("--split", default="test", choices=["test", "val"], help="which split's predictions (default test)")
    rs.add_argument("--write", action="store_true", help="keep the values in each record's predictions.rescored "
                    "block (rewritten atomically under the results lock; its other fields unchanged)")
    rs.set_defaults(fn=cmd_rescore)

    cmp = sub.add_parser("compare", help="regression gate: results vs a baseline; exit 1 when anything regressed")
    cmp.add_argument("--baseline", required=True, metavar="PATH", help="directory of baseline run records")
    cmp.add_argument("--results", required=True, metavar="DIR", help="directory of new run records")
    cmp.add_argument("--suite", help="only this suite (default: every suite of the baseline)")
    cmp.add_argument("--tolerance", type=float, default=0.01,
                     help="smallest drop that counts, in metric units (default 0.01 = 1 point)")
    cmp.add_argument("--k", type=float, default=2.0, help="a drop must also exceed k × baseline std (default 2)")
    cmp.add_argument("--max-slowdown", type=float, default=0.2,
                     help="cost gate: fraction slower than the baseline allowed (default 0.2; negative: no gate)")
    cmp.add_argument("--cost-key", default="wall_s", help="cost figure the cost gate checks (default wall_s)")
    cmp.add_argument("--cost-gate", choices=["fail", "warn", "off"], default="fail",
                     help="a too-slow strategy fails the gate, only warns, or is not checked (default fail)")
    cmp.add_argument("--exact", choices=["auto", "off"], default="auto",
                     help="auto: runs made in the baseline's environment (packages, CPU model, threads, device, "
                     "determinism) must reproduce every metric bit for bit, any difference fails (default); off: "
                     "the statistical gate only")
    cmp.add_argument("--out", help="also write the tables as markdown to this file")
    cmp.set_defaults(fn=cmd_compare)

    ls = sub.add_parser("ls", help="list what the registries hold")
    ls.add_argument("what", choices=["sources", "targets", "strategies", "metrics", "tasks"])
    ls.add_argument("--json", action="store_true", help="one JSON document: a list of {name, description, tag}")
    ls.set_defaults(fn=cmd_ls)

    ex = sub.add_parser("export", help="log the records to an experiment tracker: one parent run per suite, one "
                        "run per cell and seed; re-exporting adds nothing twice")
    ex.add_argument("tracker", choices=["mlflow", "tensorboard", "wandb"])
    ex.add_argument("--results", default="results", help="results root to read (default: results/)")
    ex.add_argument("--suite", help="only this suite")
    ex.add_argument("--tracking-uri", help="mlflow: the tracking server (default: $MLFLOW_TRACKING_URI, else ./mlruns)")
    ex.add_argument("--experiment", default="harness", help="mlflow: the experiment (default: harness)")
    ex.add_argument("--logdir", default="runs", help="tensorboard: the log directory (default: runs/, as "
                    "`tensorboard --logdir runs` reads)")
    ex.add_argument("--dir", help="wandb: where its wandb/ run directories go (default: $WANDB_DIR, else .); "
                    "offline unless $WANDB_MODE says otherwise: upload them with `wandb sync`")
    ex.add_argument("--project", help="wandb: the project (default: $WANDB_PROJECT, else harness)")
    ex.set_defaults(fn=cmd_export)

    sch = sub.add_parser("schema", help="write the JSON Schema of suite files (editors complete and check keys)")
    sch.add_argument("--out", metavar="FILE", help="write it to FILE (default: stdout); suites/ use docs/suite.schema.json")
    sch.set_defaults(fn=cmd_schema)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled or timed out, a scheduler's pre-emption, `kill`): handled as
    Ctrl-C is — the runs in flight and the pool's workers stop, nothing is half-written — not the
    default death that left a pool's workers training on as orphans."""


def _terminate(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While a command runs in the main thread, SIGTERM raises :class:`Terminated`; the handler
    before is restored after (``main`` is also called in-process, by tests and scripts)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        # None: the handler before was installed from C and cannot be named; the default then
        signal.signal(signal.SIGTERM, before if before is not None else signal.SIG_DFL)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with sigterm_as_interrupt():
            return args.fn(args)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print(f"{'terminated' if terminated else 'interrupted'}: runs in flight were cancelled and have no record "
              "(nothing is half-written); rerun the same command to resume", file=sys.stderr)
        return 143 if terminated else 130
