"""RunSpec → RunRecord. Any exception becomes a ``failed`` (or ``timeout``) record."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from harness.config.errors import RunTimeout
from harness.plan import RunSpec
from harness.records import RunRecord, now
from harness.registry import SOURCES, STRATEGIES, TARGETS, TASKS
from harness.run import alloc, cost
from harness.run.loop import fit, place
from harness.run.seed import determinism_state, seed_everything
from harness.sources.base import TransferModel, count_params
from harness.strategies.base import RunContext
from harness.targets.base import TargetData

SUBSAMPLE_SEED = 0  # subsets are the same for every run seed: seed-paired comparisons, shared caches


@dataclass(frozen=True)
class ExecOptions:
    cache_dir: Path | None = None
    show_progress: bool = False
    results_dir: Path | None = None


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{requested}' requested but CUDA is not available")
    return dev


def limit(data: TargetData, max_train: int | None, max_eval: int | None) -> TargetData:
    splits = {k: s.sample(max_train if k == "train" else max_eval, SUBSAMPLE_SEED) for k, s in data.splits.items()}
    return TargetData(data.label_names, splits, data.split_info, data.preprocessing, data.extra)


def build(spec: RunSpec, device: torch.device):
    """Strategy, model and data of a run (model prepared by its strategy)."""
    cfg = spec.train_config
    strategy = STRATEGIES.get(spec.strategy)(STRATEGIES.get(spec.strategy).Params.model_validate(spec.params), cfg)
    src_ref = spec.source["model"]
    ns, name = src_ref.split("/", 1)
    src_params = {k: v for k, v in spec.source.items() if k != "model"}
    source = SOURCES.get(ns)
    backbone = source.build(name, src_params, pretrained=strategy.pretrained)
    head_init = getattr(source.Params.model_validate(src_params), "head_init", "auto")  # plugins may lack it
    tns, tname = spec.target["dataset"].split("/", 1)
    task = TASKS.get(spec.target["task"])
    tparams = {k: v for k, v in spec.target.items() if k not in ("dataset", "task")}
    data = TARGETS.get(tns).load(tname, tparams, task.name, backbone)
    data = limit(data, cfg.max_train_samples, cfg.max_eval_samples)
    data = place(data, device, cfg.num_workers)  # before adapt: feature extraction reads it on the device too
    model = TransferModel(backbone, len(data.label_names), dropout=0.1 if backbone.modality == "text" else 0.0,
                          head_init=head_init)
    strategy.prepare(model)
    return strategy, model, data, task


def execute(spec: RunSpec, options: ExecOptions | None = None) -> RunRecord:
    """Run ``spec`` into its record. With ``on_oom: shrink`` a CUDA out-of-memory run is retried with
    batch_size halved and grad_accum doubled (the same effective batch) until it fits or the batch is 1;
    the record keeps the run's own config and lists the retries in ``config.notes.oom_retries``."""
    started, t0 = now(), time.monotonic()
    record, attempt, retries = execute_once(spec, options), spec, []
    while (record.error or {}).get("oom") and attempt.train_config.on_oom == "shrink" \
            and attempt.train_config.batch_size > 1:
        cfg = attempt.train_config
        retries.append({"batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
                        "message": record.error["message"][:300], "wall_s": record.cost.get("wall_s")})
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the failed attempt's tensors died with its frame
        train = {**attempt.train, "batch_size": cfg.batch_size // 2, "grad_accum": cfg.grad_accum * 2}
        if cfg.timeout_s:  # one budget for the run, retries included
            train["timeout_s"] = max(cfg.timeout_s - (time.monotonic() - t0), 1e-3)
        attempt = replace(attempt, train=train)
        record = execute_once(attempt, options)
    if retries:
        notes = {**record.config.get("notes", {}), "oom_retries": retries,
                 "batch_size_used": attempt.train["batch_size"], "grad_accum_used": attempt.train["grad_accum"]}
        record = record.model_copy(update={"config": {**spec.config(), "notes": notes}, "started_at": started})
    return record


def execute_once(spec: RunSpec, options: ExecOptions | None = None) -> RunRecord:
    """One attempt at a run; any exception becomes a ``failed`` (or ``timeout``) record."""
    options = options or ExecOptions()
    cfg = spec.train_config
    started = now()
    status, error, metrics, curve, split, extra_cost, notes = "ok", None, {}, [], {}, {}, {}
    task_name = spec.target.get("task")
    device = torch.device("cpu")
    meter = None
    try:
        device = pick_device(cfg.device)
        deadline = time.monotonic() + cfg.timeout_s if cfg.timeout_s else None
        host_memory = alloc.keep_freed_memory(device.type)
        with cost.Meter(device) as meter:
            seed_everything(spec.seed, cfg.deterministic)
            strategy, model, data, task = build(spec, device)
            trainable, total = count_params(model)
            split = {**data.split_info, "preprocessing": data.preprocessing,
                     "used": {k: len(s) for k, s in data.splits.items()}}
            ctx = RunContext(device, options.cache_dir, spec.source, spec.target, spec.seed, meter,
                             options.show_progress, results_dir=options.results_dir)
            trained, data = strategy.adapt(model, data, ctx)
            result = fit(trained, data, task, strategy, cfg, device, spec.seed, meter, options.show_progress,
                         deadline, desc=f"{spec.pair}/{spec.label}/s{spec.seed}")
            metrics = {**result.test, "val": result.val}
            curve = result.curve
            notes = {**ctx.notes, **strategy.report(model), "precision": result.precision,
                     "deterministic": cfg.deterministic, "determinism": determinism_state(),
                     "host_memory": host_memory,
                     "source_info": model.backbone.info, "head_init": model.backbone.head_init_used(model.head_init)}
            extra_cost = {
                "trainable_params": trainable, "total_params": total,
                "trainable_fraction": round(trainable / total, 6) if total else None,
                "steps": result.steps, "train_samples": result.train_samples,
                "flops_per_step": result.flops_per_step,
                "train_flops": result.flops_per_step * result.steps * cfg.grad_accum if result.flops_per_step else None,
                "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
            }
    except RunTimeout as e:
        status, error = "timeout", {"type": "RunTimeout", "message": str(e),
                                    "traceback": "".join(traceback.format_exception(e)[-4:])[-2000:]}
    except Exception as e:  # noqa: BLE001 - a failed run is a record, the suite goes on
        status = "failed"
        error = {"type": type(e).__name__, "message": str(e)[:2000],
                 "traceback": "".join(traceback.format_exception(e)[-12:])[-4000:]}
        if isinstance(e, torch.cuda.OutOfMemoryError):
            error["oom"] = True
    alloc.trim()  # outside the meter: not the run's cost
    run_cost = {**(meter.summary() if meter and hasattr(meter, "t0") else {}), **extra_cost}
    if run_cost.get("train_s") and run_cost.get("train_samples"):
        run_cost["samples_per_s"] = round(run_cost["train_samples"] / run_cost["train_s"], 2)
    if spec.price_per_gpu_hour is not None and run_cost.get("gpu_hours") is not None:
        run_cost["price"] = round(run_cost["gpu_hours"] * spec.price_per_gpu_hour, 6)
    task = TASKS.get(task_name) if task_name in TASKS else None
    return RunRecord(
        run_id=spec.run_id, suite=spec.suite, pair=spec.pair, strategy=spec.strategy, label=spec.label,
        seed=spec.seed, smoke=spec.smoke, status=status, error=error, task=task_name,
        primary_metric=task.primary if task else None, config={**spec.config(), "notes": notes},
        metrics=metrics, curve=curve, split=split, cost=run_cost, env=cost.environment(device),
        started_at=started, finished_at=now(),
    )
