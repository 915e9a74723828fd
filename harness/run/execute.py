"""RunSpec → RunRecord. Any exception becomes a ``failed`` (or ``timeout``) record."""

from __future__ import annotations

import os
import time
import traceback
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from harness import cache as store
from harness import predictions as kept_predictions
from harness.errors import RunTimeout
from harness.plan import PRETRAIN_EXPORT, PRETRAIN_INPUT, RunSpec
from harness.records import RunRecord, now
from harness.registry import SOURCES, STRATEGIES, TASKS
from harness.run import alloc, cost, domain_gap, outputs, selection
from harness.run.context import InputRun, RunContext
from harness.run.loop import fit, place
from harness.run.options import ExecOptions
from harness.run.progress import run_title
from harness.run.seed import SUBSAMPLE_SEED, determinism_state, seed_everything
from harness.sources.base import input_identity
from harness.sources.nets import TransferModel, build_backbone, count_params
from harness.targets.base import TargetData, fingerprint, sample_indices
from harness.targets.load import load_target
from harness.targets.vision.common import data_root_for


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(requested)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{requested}' requested but CUDA is not available")
    return dev


def limit(data: TargetData, max_train: int | None, max_eval: int | None) -> TargetData:
    """The splits (and their content keys) subsampled to the run's limits; ``split_info`` gains
    the fingerprints of the examples used."""
    splits, keys = {}, dict(data.keys)
    for k, s in data.splits.items():
        idx = sample_indices(len(s), max_train if k == "train" else max_eval, SUBSAMPLE_SEED)
        splits[k] = s if idx is None else s.select(idx)
        if idx is not None and k in keys:
            keys[k] = keys[k][idx]
    info = dict(data.split_info)
    if keys:
        info["used_fingerprint"] = {k: fingerprint(v) for k, v in keys.items()}
    return replace(data, splits=splits, keys=keys, split_info=info)


def data_fingerprint(info: Mapping[str, Any]) -> str | None:
    """Which examples a run was measured on: its target's whole training pool (the budget may
    subsample it) and the validation and test examples it evaluated. Runs of one pair are
    comparable only when this agrees."""
    full, used = info.get("fingerprint") or {}, info.get("used_fingerprint") or {}
    parts = [full.get("train"), used.get("val", full.get("val")), used.get("test", full.get("test"))]
    return None if None in parts else fingerprint(parts)


_TARGETS: OrderedDict[str, TargetData] = OrderedDict()
TARGET_CACHE_SIZE = 4  # loaded targets kept per process: a suite's pairs reuse theirs run after run


def cached_target(spec: RunSpec, backbone) -> TargetData:
    """The run's target, loaded and checked (:func:`load_target`) once per process for each
    (target, source) and reused by later runs in the same process: the splits are never changed
    in place (subsets and strategies make new ones), so a run sees exactly what a fresh load gives."""
    import json

    key = json.dumps({"target": spec.target, "source": input_identity(spec.source)}, sort_keys=True, default=str)
    if key in _TARGETS:
        _TARGETS.move_to_end(key)
        return _TARGETS[key]
    data = load_target(spec.target, backbone, spec.target["task"])
    _TARGETS[key] = data
    while len(_TARGETS) > TARGET_CACHE_SIZE:
        _TARGETS.popitem(last=False)
    return data


def source_backbone(spec: RunSpec, pretrained: bool, inputs: Mapping[str, InputRun] | None):
    """The backbone of ``spec``'s source as its run starts from it: :func:`build_backbone`, then,
    for a ``pretrain:`` source, the weights and head its pretrain run exported (an input of the
    plan graph)."""
    backbone = build_backbone(spec.source, pretrained=pretrained)
    if not pretrained or not spec.source.get("pretrain"):
        return backbone
    got = (inputs or {}).get(PRETRAIN_INPUT)
    if got is None:
        raise ValueError(f"{spec.run_id}: its source is pretrained by another run of the plan, which was not "
                         "given to it: run it from its suite's plan")
    payload = got.outputs[PRETRAIN_EXPORT]
    backbone.load_state_dict(payload["state"])
    backbone.source_head = payload["head"]
    target = spec.source["pretrain"]["target"]
    backbone.info = {**backbone.info, "weights": f"pretrained by {got.run_id}", "pretrain_run": got.run_id,
                     "pretrain_target": target.get("dataset"), "pretrain_labels": payload["label_names"],
                     "pretrain_scores": payload.get("scores")}
    return backbone


def check_pretrain_leak(spec: RunSpec, data: TargetData, inputs: Mapping[str, InputRun] | None) -> None:
    """A pretrain run that trained on an example this run validates or tests on would leak it."""
    got = (inputs or {}).get(PRETRAIN_INPUT)
    if got is None:
        return
    seen = set(got.outputs[PRETRAIN_EXPORT].get("train_keys") or ())
    for split in ("val", "test"):
        held = {str(k) for k in data.keys.get(split, [])}
        both = seen & held
        if both:
            raise ValueError(f"split leak: the source's pretrain run {got.run_id} trained on {len(both)} example(s) "
                             f"of this run's {split} split; pretrain on the pair's training split only")


def build(spec: RunSpec, device: torch.device, inputs: Mapping[str, InputRun] | None = None):
    """Strategy, model and data of a run (model prepared by its strategy)."""
    cfg = spec.train_config
    strategy = STRATEGIES.get(spec.strategy)(STRATEGIES.get(spec.strategy).Params.model_validate(spec.params), cfg)
    ns = spec.source["model"].split("/", 1)[0]
    src_params = {k: v for k, v in spec.source.items() if k != "model"}
    source = SOURCES.get(ns)
    backbone = source_backbone(spec, strategy.pretrained, inputs)
    head_init = getattr(source.Params.model_validate(src_params), "head_init", "auto")  # plugins may lack it
    task = TASKS.get(spec.target["task"])
    data = cached_target(spec, backbone)
    check_pretrain_leak(spec, data, inputs)
    data = limit(data, cfg.max_train_samples, cfg.max_eval_samples)
    data = place(data, device, cfg.num_workers)  # before adapt: feature extraction reads it on the device too
    model = TransferModel(backbone, len(data.label_names), dropout=0.1 if backbone.modality == "text" else 0.0,
                          head_init=head_init)
    strategy.prepare(model)
    return strategy, model, data, task


def execute(spec: RunSpec, options: ExecOptions | None = None,
            inputs: Mapping[str, RunSpec] | None = None) -> RunRecord:
    """Run ``spec`` into its record. ``inputs`` are the resolved runs it reads (its ``inputs``
    by name: a distillation teacher), whose exported outputs it finds in the cache — or
    recomputes, when the cache lost them.

    With ``on_oom: shrink`` a CUDA out-of-memory run is retried with batch_size halved and
    grad_accum doubled (the same effective batch) until it fits or the batch is 1; the record keeps
    the run's own config and lists the retries in ``config.notes.oom_retries``."""
    started, t0 = now(), time.monotonic()
    record, attempt, retries = execute_once(spec, options, inputs)[0], spec, []
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
        # outputs are filed under the run's own computation: its readers look for them there
        record = execute_once(attempt, options, inputs, export_key=spec.compute_key)[0]
    if retries:
        notes = {**record.config.get("notes", {}), "oom_retries": retries,
                 "batch_size_used": attempt.train["batch_size"], "grad_accum_used": attempt.train["grad_accum"]}
        record = record.model_copy(update={"config": {**spec.config(), "notes": notes}, "started_at": started})
    return record


def read_inputs(spec: RunSpec, inputs: Mapping[str, RunSpec] | None, options: ExecOptions) -> dict[str, InputRun]:
    """The outputs of the runs ``spec`` reads, from the cache; an input whose outputs are gone is
    run again here (deterministically: the same computation) to get them back."""
    found: dict[str, InputRun] = {}
    for name in spec.inputs:
        source = (inputs or {}).get(name)
        if source is None:
            raise ValueError(f"{spec.run_id} reads the output of {spec.inputs[name]} ({name}), which was not given "
                             "to it: run it from its suite's plan")
        wanted = source.exports or ("train_logits",)
        got = {n: outputs.load(options.cache_dir, source.compute_key, n) for n in wanted}
        regenerated = any(v is None for v in got.values())
        if regenerated:
            # an input that reads runs of its own (a teacher starting from a pretrain: source) is
            # given those of them this run was given too (a student reads the same pretrain)
            theirs = {n: s for n, rid in source.inputs.items() for s in (inputs or {}).values() if s.run_id == rid}
            record, made = execute_once(replace(source, exports=wanted), options, theirs)
            if record.status != "ok" or made is None:
                raise ValueError(f"{name} {source.run_id} could not be run again to recover its outputs: "
                                 f"{(record.error or {}).get('message', record.status)}")
            got = made
        found[name] = InputRun(source.run_id, {**got, "regenerated": regenerated})
    return found


def budget_of(spec: RunSpec, cfg, steps: int | None, examples: int | None, precision: str | None,
              closed_form: dict[str, Any] | None = None) -> dict[str, Any]:
    """The budget a run had (and what it used), beside its pair's reference budget. A fit in
    closed form (``Strategy.closed_form``) records its solver and what it chose (``C``) in place of
    the optimizer, lr, scheduler and weight decay it never used."""
    own = {"epochs": cfg.epochs, "max_steps": cfg.max_steps, "max_train_samples": cfg.max_train_samples,
           "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum}
    ref = dict(spec.reference)
    differs = [k for k in own if k in ref and own[k] != ref[k]]
    how = ({"optimizer": cfg.optimizer, "lr": cfg.lr, "scheduler": cfg.scheduler, "weight_decay": cfg.weight_decay}
           if closed_form is None else {"closed_form": dict(closed_form)})
    check = {"check": {"factor": spec.budget_check}} if spec.budget_check else {}  # the report's adequacy test
    return {**own, "steps": steps, "examples_seen": examples, **how, "precision": precision,
            "reference": ref, "differs": differs, **check}


def label_free(spec: RunSpec, strategy, model, data: TargetData, task, result, device: torch.device,
               ctx: RunContext) -> dict[str, float | None]:
    """Every validator's score of the trained model (:mod:`harness.run.selection`), so a search can
    choose without target labels and the report can show what each would have chosen; timed as
    ``cost.validators_s``, not charged to the run. A validator that cannot be computed (too few
    rows, a singular fit) leaves the run ok and says why."""
    from harness.targets.naming import evaluated_elsewhere

    cfg = spec.train_config
    try:
        with ctx.phase("validators"):  # a measurement beside the run, not its cost (cost.NOT_CHARGED)
            scores, ctx.notes["validators"] = selection.measure(
                model, data, task, strategy.evaluating(model), result.val.get(task.primary), device,
                cfg.eval_batch_size or 2 * cfg.batch_size, result.precision, evaluated_elsewhere(spec.target))
    except (ValueError, np.linalg.LinAlgError) as e:
        ctx.notes["validators"] = {"error": f"{type(e).__name__}: {e}"[:500]}
        return {"oracle": result.val.get(task.primary)}
    return scores


def bn_statistics(strategy, model: torch.nn.Module, norm_stats: Mapping[str, Any]) -> str:
    """Which data the BatchNorm statistics a run is scored with come from: the strategy's word
    (:meth:`~harness.strategies.base.Strategy.bn_statistics`), ``none`` for a model without
    BatchNorm, and the layers the frozen-module policy kept at the source's (``frozen``: all)."""
    total = sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not total:
        return "none"
    said, frozen = strategy.bn_statistics(), int(norm_stats.get("frozen_batchnorms") or 0)
    if said.startswith("labelled") and frozen:
        return "frozen" if frozen >= total else f"{said} ({frozen} of {total} frozen)"
    return said


def data_summary(spec: RunSpec, split: Mapping[str, Any], notes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the report needs of a run's data: which examples, which domain it was trained and
    evaluated on, the unlabeled domain it adapted to (for strategies that use one) with the target
    labels it was given, and the measured gap between the domains (the runner measures it for
    the runs whose strategy records it, the probes, of a pair that has unlabeled data)."""
    from harness.targets.naming import domain_name, qualified

    domain = spec.target.get("domain") or split.get("domain") or "original"
    evaluated = spec.target.get("eval_domain")
    eval_domain = domain_name(evaluated) or split.get("eval_domain") or domain
    cls = STRATEGIES.get(spec.strategy) if spec.strategy in STRATEGIES else None
    adapts, labelled = (cls.uses_unlabeled, cls.uses_target_labels) if cls else (False, False)
    control = cls.control(cls.Params.model_validate(spec.params)) if cls else None
    dataset = spec.target.get("dataset")
    return {"fingerprint": data_fingerprint(split), "eval_domain": eval_domain, "train_domain": domain,
            "unlabeled_domain": domain_name(spec.target.get("unlabeled")) if adapts else None,
            # the domains as datasets, comparable across pairs (the report's domain-adaptation view)
            "trained_on": qualified(dataset, domain),
            "evaluated_on": qualified(evaluated["dataset"], evaluated.get("domain")) if isinstance(evaluated, dict)
            else qualified(dataset, eval_domain),
            "target_shots": split.get("target_shots") if labelled else None,
            "target_shots_domain": domain_name(spec.target.get("unlabeled")) if labelled and split.get("target_shots")
            else None,
            "domain_gap": (notes or {}).get("domain_gap"),
            # where the BatchNorm statistics it was scored with come from, and what it controls for
            "bn_statistics": ((notes or {}).get("norm_stats") or {}).get("statistics"),
            "control": control,
            "source": spec.source.get("model"), "dataset": spec.target.get("dataset"),
            # the input every row of a shift should share (the domain report's header says it)
            "resolution": (split.get("preprocessing") or {}).get("size"), "max_length": spec.source.get("max_length"),
            "duplicates_across_splits": split.get("duplicates_across_splits") or {}}


def execute_once(spec: RunSpec, options: ExecOptions | None = None, inputs: Mapping[str, RunSpec] | None = None,
                 export_key: str | None = None) -> tuple[RunRecord, dict[str, Any] | None]:
    """One attempt at a run; any exception becomes a ``failed`` (or ``timeout``) record. Returns the
    record and the outputs it exported (saved to the cache too)."""
    options = options or ExecOptions()
    started, load_start = now(), cost.load_average()
    rejected_before = dict(store.REJECTED)  # damaged cache entries this run finds (and recomputes)
    status, error, metrics, curve, split, extra_cost, notes = "ok", None, {}, [], {}, {}, {}
    budget: dict[str, Any] = {}
    exported = None
    preds_bytes: bytes | None = None
    task_name = spec.target.get("task")
    device = torch.device("cpu")
    meter = None
    ctx: RunContext | None = None
    try:
        cfg = spec.train_config
        device = pick_device(cfg.device)
        deadline = time.monotonic() + cfg.timeout_s if cfg.timeout_s else None
        input_runs = read_inputs(spec, inputs, options)  # before this run's meter and seeding
        host_memory = alloc.keep_freed_memory(device.type)
        with data_root_for(options.data_dir), cost.Meter(device) as meter:
            seed_everything(spec.seed, cfg.deterministic)
            strategy, model, data, task = build(spec, device, input_runs)
            trainable, total = count_params(model)
            split = {**data.split_info, "preprocessing": data.preprocessing,
                     "used": {k: len(s) for k, s in data.splits.items()}}
            ctx = RunContext(device, options.cache_dir, spec.source, spec.target, spec.seed, meter,
                             options.show_progress, results_dir=options.results_dir, inputs=input_runs)
            raw = data
            if strategy.records_domain_gap and "unlabeled" in data.extra:  # a measurement of the pair
                bs = max(64, cfg.eval_batch_size or 2 * cfg.batch_size)
                ctx.notes.update(domain_gap.pair_gap(ctx, model.backbone.to(device), data, bs))
            trained, data = strategy.adapt(model, data, ctx)
            result = fit(trained, data, task, strategy, cfg, device, spec.seed, meter, options.show_progress,
                         deadline, desc=run_title(spec))
            metrics = {**result.test, "val": result.val}
            if trained is model and "unlabeled" in data.extra:  # a model over cached features has no such outputs
                metrics["validators"] = label_free(spec, strategy, model, data, task, result, device, ctx)
            elif (frozen := strategy.validators()) is not None:  # a fit over frozen features measured its own
                metrics["validators"] = frozen
            curve = result.curve
            notes = {**ctx.notes, **strategy.report(model), "precision": result.precision,
                     "deterministic": cfg.deterministic, "determinism": determinism_state(),
                     "host_memory": host_memory,
                     "norm_stats": {**result.norm_stats, "statistics": bn_statistics(strategy, model,
                                                                                     result.norm_stats)},
                     "source_info": model.backbone.info, "head_init": model.backbone.head_init_used(model.head_init)}
            extra_cost = {
                "trainable_params": trainable, "total_params": total,
                "trainable_fraction": round(trainable / total, 6) if total else None,
                "max_trainable_params": max(trainable, result.max_trainable or 0),
                "steps": result.steps, "train_samples": result.train_samples,
                "flops_per_step": result.flops_per_step,
                "train_flops": result.flops_per_step * result.steps * cfg.grad_accum if result.flops_per_step else None,
                "best_epoch": result.best_epoch, "stopped_early": result.stopped_early,
            }
            if result.final_trainable is not None:
                extra_cost["trainable_params"] = result.final_trainable
                extra_cost["trainable_fraction"] = round(result.final_trainable / total, 6) if total else None
            budget = budget_of(spec, cfg, result.steps, result.train_samples, result.precision,
                               None if strategy.trains_in_loop() else strategy.closed_form())
        # per example, keyed by content, so metrics can be recomputed (`harness rescore`); outside the meter
        collected = kept_predictions.collect(result.predictions, data.keys)
        preds_bytes = kept_predictions.encode(collected) if collected else None
        if spec.exports:  # outside the meter: another run's input, not this run's cost
            scores = {"val": result.val.get(task.primary), "test": result.test.get(task.primary),
                      "metric": task.primary}
            eval_bs = cfg.eval_batch_size or 2 * cfg.batch_size
            exported = outputs.export(model.to(device), raw, spec.exports, device, eval_bs, scores)
            outputs.save(options.cache_dir, export_key or spec.compute_key, exported)
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
    if ctx is not None and ctx.reused_s:  # cached work this run read: what it took when computed
        run_cost["reused"] = {k: round(v, 3) for k, v in ctx.reused_s.items()}
    if run_cost.get("train_s") and run_cost.get("train_samples"):
        run_cost["samples_per_s"] = round(run_cost["train_samples"] / run_cost["train_s"], 2)
    if spec.price_per_gpu_hour is not None and run_cost.get("gpu_hours") is not None:
        run_cost["price"] = round(run_cost["gpu_hours"] * spec.price_per_gpu_hour, 6)
    task = TASKS.get(task_name) if task_name in TASKS else None
    search = None
    if spec.search is not None and spec.role == "trial":
        search = {"point": spec.point, "index": spec.trial_index}
    rejected = {k: n - rejected_before.get(k, 0) for k, n in store.REJECTED.items() if n > rejected_before.get(k, 0)}
    if rejected:  # counted in the record: a damaged entry was recomputed, never trusted
        notes = {**notes, "cache_rejected": rejected}
    record = RunRecord(
        run_id=spec.run_id, suite=spec.suite, pair=spec.pair, strategy=spec.strategy, label=spec.label,
        seed=spec.seed, smoke=spec.smoke, role=spec.role, status=status, error=error, task=task_name,
        primary_metric=task.primary if task else None, config={**spec.config(), "notes": notes},
        metrics=metrics, curve=curve, split=split, cost=run_cost, budget=budget, search=search,
        data=data_summary(spec, split, notes) if split else {},
        env={**run_environment(device, options), "load_start": load_start, "load_end": cost.load_average()},
        started_at=started, finished_at=now(),
        predictions=kept_predictions.reference(preds_bytes, spec.run_id) if preds_bytes and status == "ok" else None,
    )
    return record.with_prediction_bytes(preds_bytes if record.predictions else None), exported


def run_environment(device: torch.device, options: ExecOptions) -> dict[str, Any]:
    """The record's environment; a data root given in ``options`` is recorded as the variable that
    also sets it (``HARNESS_DATA_DIR``), as records said when ``--data-dir`` was passed through it.
    The hostname is replaced by ``hostname_hash`` (:func:`harness.cache.hostname_hash`) unless
    ``options.record_hostname``."""
    env = cost.environment(device)
    if not options.record_hostname:
        env["hostname_hash"] = store.hostname_hash(env.pop("hostname", "") or "")
    if options.data_dir is not None:
        env["env"] = cost.redacted_env({**os.environ, "HARNESS_DATA_DIR": str(options.data_dir)})
    return env
