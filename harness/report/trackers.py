"""Records → experiment trackers (MLflow, TensorBoard, Weights & Biases), each through its own
library.

The records stay the source of truth: an export reads them, whichever executor made them, and
can be repeated. Per suite one parent (an MLflow parent run; a TensorBoard directory; a wandb
group), per record
(cell × seed, trials and teachers too, told apart by the ``role`` tag) one child with the resolved
config as parameters, the final test and validation metrics, the learning curve as step metrics,
the cost figures, the identity as tags and the record itself as an artifact.

Re-exporting logs nothing twice: each child carries its record's ``run_id`` and
``written_at``; a record already exported as it is now is skipped, one rewritten since (a rerun
of a failed seed) replaces its old child.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.digest import digest
from harness.errors import HarnessError
from harness.records import RunRecord, latest

TAG = "harness"  # MLflow tag prefix of everything the export sets
PARAM_VALUE_CHARS = 6000  # MLflow's limit on a parameter's value (the record artifact keeps it whole)
PARAM_KEY_CHARS = 250
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-./ ]")  # what MLflow accepts in a key


@dataclass(frozen=True)
class ExportCounts:
    """What one export did."""

    logged: int = 0  # children created
    replaced: int = 0  # of which: a newer record replaced an older child
    skipped: int = 0  # already exported as they are


def flatten(data: Mapping[str, Any], sep: str = ".", prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, leaf)`` for every leaf of nested mappings; lists are leaves."""
    for key, value in data.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            yield from flatten(value, sep, name)
        else:
            yield name, value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def final_metrics(record: RunRecord) -> dict[str, float]:
    """Test metrics as ``accuracy``, ``per_label/PER``; validation ones as ``val/accuracy``; cost
    figures as ``cost/wall_s``: every finite number of the record's metrics and cost."""
    out = {k: n for k, v in flatten(record.metrics, "/") if (n := _number(v)) is not None}
    out.update({k: n for k, v in flatten(record.cost, "/", "cost") if (n := _number(v)) is not None})
    return out


def curve_points(record: RunRecord) -> Iterator[tuple[int, str, float]]:
    """``(step, curve/<key>, value)`` for every evaluation of the learning curve; the step is the
    optimizer step where the record has it, else the epoch."""
    for i, point in enumerate(record.curve):
        step = point.get("step", point.get("epoch", i))
        for key, value in point.items():
            if key != "step" and (n := _number(value)) is not None:
                yield int(step), f"curve/{key}", n


def params(record: RunRecord) -> dict[str, str]:
    """The resolved config, flattened (``train.lr``), as the strings trackers store."""
    out = {}
    for key, value in flatten(record.config):
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        out[_KEY_CHARS.sub("_", key)[:PARAM_KEY_CHARS]] = text[:PARAM_VALUE_CHARS]
    return out


def tags(record: RunRecord) -> dict[str, str]:
    """The record's identity, as tags under ``harness.``."""
    fields = {"run_id": record.run_id, "suite": record.suite, "pair": record.pair, "strategy": record.strategy,
              "label": record.label, "seed": record.seed, "role": record.role, "status": record.status,
              "task": record.task, "primary_metric": record.primary_metric, "smoke": record.smoke,
              "written_at": record.written_at}
    return {f"{TAG}.{k}": str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items() if v is not None}


def suite_key(record: RunRecord) -> str:
    """The parent a record goes under: its suite, or the suite's smoke run."""
    return f"{record.suite}-smoke" if record.smoke else record.suite


def select(records: Iterable[RunRecord], suite: str | None = None) -> list[RunRecord]:
    """The latest record of each run, of one suite (``name`` or ``name-smoke``) or all, in order."""
    chosen = [r for r in latest(records).values() if suite is None or suite_key(r) == suite or
              (r.suite == suite and not r.smoke)]
    return sorted(chosen, key=lambda r: (suite_key(r), r.pair, r.label, r.seed, r.run_id))


def _millis(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def export_mlflow(records: Iterable[RunRecord], tracking_uri: str | None = None,
                  experiment: str = "harness") -> ExportCounts:
    """Log records to MLflow (``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's default)."""
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        raise HarnessError("the MLflow export needs mlflow: pip install 'transfer-harness[track]'") from e

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found else client.create_experiment(experiment)
    parents: dict[str, str] = {}
    for run in _search(client, exp_id, f"tags.`{TAG}.kind` = 'suite'"):
        parents[run.data.tags[f"{TAG}.suite"]] = run.info.run_id
    children = {run.data.tags[f"{TAG}.run_id"]: run for run in _search(client, exp_id, f"tags.`{TAG}.kind` = 'run'")}
    logged = replaced = skipped = 0
    for rec in records:
        old = children.get(rec.run_id)
        if old is not None and old.data.tags.get(f"{TAG}.written_at") == rec.written_at:
            skipped += 1
            continue
        if old is not None:  # rewritten since (a rerun): parameters cannot change in place
            client.delete_run(old.info.run_id)
            replaced += 1
        key = suite_key(rec)
        if key not in parents:
            parent = client.create_run(exp_id, run_name=key, tags={f"{TAG}.kind": "suite", f"{TAG}.suite": key})
            client.set_terminated(parent.info.run_id)
            parents[key] = parent.info.run_id
        run = client.create_run(exp_id, start_time=_millis(rec.started_at), run_name=rec.run_id,
                                tags={"mlflow.parentRunId": parents[key], f"{TAG}.kind": "run", **tags(rec)})
        rid, stamp = run.info.run_id, _millis(rec.finished_at)
        metrics = [Metric(k, v, stamp, 0) for k, v in final_metrics(rec).items()]
        metrics += [Metric(k, v, stamp, step) for step, k, v in curve_points(rec)]
        # as few requests as MLflow's batch limits allow (100 params, 1000 entities): one for a usual record
        param_batches = list(_chunks([Param(k, v) for k, v in params(rec).items()], 100)) or [[]]
        for i, batch in enumerate(param_batches):
            room = 1000 - len(batch) - 1
            client.log_batch(rid, params=batch, metrics=metrics[:room],
                             tags=[RunTag("mlflow.note.content", f"harness record {rec.run_id}")] if i == 0 else [])
            metrics = metrics[room:]
        for batch in _chunks(metrics, 1000):
            client.log_batch(rid, metrics=batch)
        client.log_text(rid, rec.model_dump_json(indent=2) + "\n", f"record/{rec.run_id}.json")
        client.set_terminated(rid, "FINISHED" if rec.status == "ok" else "FAILED", end_time=stamp)
        logged += 1
    return ExportCounts(logged, replaced, skipped)


def _search(client: Any, exp_id: str, query: str) -> Iterator[Any]:
    token = None
    while True:
        page = client.search_runs([exp_id], query, max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


RECORD_FILE = "record.json"


def export_tensorboard(records: Iterable[RunRecord], logdir: str | Path) -> ExportCounts:
    """Write records as TensorBoard event files: ``<logdir>/<suite>/<run_id>/``, each with its
    scalars, its config and metrics in the HParams view, and the record beside them."""
    try:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
    except ImportError as e:
        raise HarnessError("the TensorBoard export needs tensorboard: pip install 'transfer-harness[track]'") from e

    logged = replaced = skipped = 0
    for rec in records:
        run_dir = Path(logdir) / suite_key(rec) / rec.run_id
        kept = run_dir / RECORD_FILE
        if kept.exists():
            try:
                same = RunRecord.model_validate_json(kept.read_bytes()).written_at == rec.written_at
            except ValueError:
                same = False
            if same:
                skipped += 1
                continue
            shutil.rmtree(run_dir)  # event files append: a rewritten record starts its run afresh
            replaced += 1
        run_dir.mkdir(parents=True)
        wall = _millis(rec.finished_at) / 1000
        with SummaryWriter(log_dir=str(run_dir)) as writer:
            finals = final_metrics(rec)
            hp = dict(params(rec))
            hp.update({k.removeprefix(f"{TAG}."): v for k, v in tags(rec).items()})
            for summary in hparams(hp, {f"final/{k}": v for k, v in finals.items()}):
                writer.file_writer.add_summary(summary, walltime=wall)
            for k, v in finals.items():
                writer.add_scalar(f"final/{k}", v, 0, walltime=wall)
            for step, k, v in curve_points(rec):
                writer.add_scalar(k, v, step, walltime=wall)
            writer.add_text("record", f"```json\n{rec.model_dump_json(indent=2)}\n```", 0, walltime=wall)
        kept.write_text(rec.model_dump_json(indent=2) + "\n", encoding="utf-8")
        logged += 1
    return ExportCounts(logged, replaced, skipped)


WANDB_TAG_CHARS = 64  # wandb's limit on a tag


def wandb_id(run_id: str, project: str) -> str:
    """The wandb run id of a record in a project: stable, so re-exporting finds it; [a-z0-9] as
    wandb ids must be. The project is part of it because the local run directories it names do
    not say which project they were logged to."""
    return digest(["wandb", project, run_id], 16)


def wandb_tags(record: RunRecord) -> list[str]:
    """``pair:…``, ``strategy:…``, ``seed:…``, ``role:…`` and the rest of the identity, as wandb's tags."""
    return [f"{k.removeprefix(f'{TAG}.')}:{v}"[:WANDB_TAG_CHARS] for k, v in tags(record).items()
            if k not in (f"{TAG}.run_id", f"{TAG}.suite", f"{TAG}.written_at")]  # name and group say these


def export_wandb(records: Iterable[RunRecord], root: str | Path | None = None,
                 project: str | None = None) -> ExportCounts:
    """Log records to Weights & Biases, offline unless ``WANDB_MODE`` says otherwise: one run per
    record in ``<root>/wandb/`` (``root``, else ``WANDB_DIR``, else the working directory) for
    ``wandb sync`` to upload, grouped by suite, its job type the record's role. ``project``, else
    ``WANDB_PROJECT``, else ``harness``.

    The record is saved as the run's file ``record.json``; it is how a re-export knows a run
    (its id is :func:`wandb_id`) is already there as it is now. A newer record (a rerun) replaces
    the local run directory, under the same id: an offline run cannot be edited in place.
    """
    try:
        import wandb
    except ImportError as e:
        raise HarnessError("the Weights & Biases export needs wandb: pip install 'transfer-harness[track]'") from e

    root = Path(root or os.environ.get("WANDB_DIR") or Path.cwd())
    project = project or os.environ.get("WANDB_PROJECT") or "harness"
    # the user's WANDB_MODE and WANDB_SILENT win; else offline and quiet: an export needs no network
    mode = None if os.environ.get("WANDB_MODE") else "offline"
    quiet = {} if os.environ.get("WANDB_SILENT") else {"silent": True}
    # the exporting process is not the run: its console, git state and code are not the record's
    # (public settings only: wandb's x_ ones change without notice)
    settings = wandb.Settings(console="off", disable_git=True, save_code=False, disable_job_creation=True, **quiet)
    root.mkdir(parents=True, exist_ok=True)
    logged = replaced = skipped = 0
    for rec in records:
        rid = wandb_id(rec.run_id, project)
        # wandb writes to <root>/wandb/, or to <root>/.wandb/ where that exists
        old = sorted(d for name in ("wandb", ".wandb") for d in (root / name).glob(f"*run-*-{rid}"))
        kept = [_kept_record(d / "files" / RECORD_FILE) for d in old]
        if any(k is not None and k.written_at == rec.written_at for k in kept):
            skipped += 1
            continue
        for d in old:  # rewritten since (a rerun), or an export cut short: its run starts afresh
            shutil.rmtree(d)
        replaced += any(k is not None for k in kept)
        run = wandb.init(project=project, id=rid, name=rec.run_id, group=suite_key(rec), job_type=rec.role,
                         config=rec.config, tags=wandb_tags(rec), notes=f"harness record {rec.run_id}",
                         dir=str(root), mode=mode, resume="allow", settings=settings)
        try:
            by_step: dict[int, dict[str, float]] = {}
            for step, k, v in curve_points(rec):
                by_step.setdefault(step, {})[k] = v
            for step in sorted(by_step):
                run.log(by_step[step], step=step)
            run.summary.update(final_metrics(rec))
            # written last: a run directory with its record is a finished export
            record_path = Path(run.dir) / RECORD_FILE
            record_path.write_text(rec.model_dump_json(indent=2) + "\n", encoding="utf-8")
            run.save(str(record_path), base_path=run.dir, policy="now")
        finally:
            run.finish(exit_code=0 if rec.status == "ok" else 1)
        logged += 1
    if logged:
        # run.finish() does not wait for the .wandb file to be written: a caller that reads the runs
        # right after this returns (a script, a test) would find the last one empty
        wandb.teardown()
    return ExportCounts(logged, replaced, skipped)


def _kept_record(path: Path) -> RunRecord | None:
    try:
        return RunRecord.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None
