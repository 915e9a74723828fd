"""The size of each protocol change, measured as a seed-paired difference against a committed run.

Reads the finals of a `suites/strategies.yaml` run (their chosen learning rates), then runs each
variant below with the same budget, data and seeds, and prints, per (pair, strategy, variant),
the primary metric of the protocol and of the variant (mean ± std over seeds) and their
seed-paired difference with its 95% CI:

* ``norm_stats: adapt`` — BatchNorm statistics re-estimated on the target (the old behaviour of
  partial fine-tuning, gradual unfreezing, LoRA, adapters and BitFit on a CNN);
* ``frozen_dropout: true`` — dropout kept in frozen modules (PyTorch's and peft's default);
* ``probe: no refit`` / ``probe: 9-value grid`` — the L-BFGS probe without Kornblith et al.'s refit
  on train + val, or with the old grid 1e-4 … 1e4;
* ``hand-picked lr`` — the learning rate the suite used to set by hand before every strategy was
  tuned on validation (the `overrides:` of suites/strategies.yaml up to 0.2.0).

    python benchmarks/bench_protocol.py --results results [--executor pool --workers 2] [--only bn,dropout,probe,lr]

Runs go to ``<results>/protocol-effects/`` (resumable: a rerun reuses every finished run); the
variants share the feature cache with the suite.

The two sides (metrics, not time) are the committed finals and the variant runs, and each record
carries the sitting that made it (``env``: harness git sha, torch version, threads, CPU). A torch
version or a thread count alone moves metrics, so before running, the script compares the
committed finals' sittings with this one's (torch, and the threads each run will get: this
process's with ``--executor local``, the pool's share with ``pool``) and refuses (exit status 3)
when they differ in either, unless ``--allow-env-mismatch`` (then a warning). After the runs, the
sittings of both sides' records (variants reused from an earlier sitting included) are printed
above the figures, with a warning and exit status 3 when they differ (the figures are still
printed). The harness commit and the CPU are printed, not checked.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import yaml

from harness.plan import expand
from harness.records import scan
from harness.report.stats import paired_gain, summarize
from harness.run.execute import ExecOptions
from harness.suite import load_suite

SUITE = Path(__file__).resolve().parent.parent / "suites" / "strategies.yaml"

# What the strategies suite set by hand before 0.3.0 (the cell's own lr; pair.train's lr otherwise).
HAND_PICKED = {
    "effnet-digits": {"full_finetune": 1e-3, "layerwise_lr_decay": 1e-3, "lora": 3e-3, "adapter": 3e-3, "bitfit": 1e-2},
    "minilm-wnut16": {"full_finetune": 1e-4, "layerwise_lr_decay": 1e-4, "lora": 3e-3, "adapter": 3e-3, "bitfit": 1e-2},
}
# (variant name, pair, strategy labels, the keys it changes)
VARIANTS = {
    "bn": [("norm_stats: adapt", "effnet-digits",
            ["partial_finetune", "gradual_unfreeze", "lora", "adapter", "bitfit"], {"norm_stats": "adapt"})],
    "dropout": [("frozen_dropout: true", "minilm-wnut16", ["partial_finetune", "lora", "adapter"],
                 {"frozen_dropout": True})],
    "probe": [("probe: no refit", pair, ["linear_probe"], {"refit": False}) for pair in ("effnet-digits", "minilm-wnut16")]
    + [("probe: 9-value grid", pair, ["linear_probe"], {"c_grid": [10.0 ** k for k in range(-4, 5)]})
       for pair in ("effnet-digits", "minilm-wnut16")],
    "lr": [("hand-picked lr", pair, list(lrs), "hand") for pair, lrs in HAND_PICKED.items()],
}


def chosen(records) -> dict[tuple[str, str], dict]:
    """(pair, label) → the point each final ran with (empty without a search)."""
    out: dict[tuple[str, str], dict] = {}
    for r in records:
        if r.role == "final" and r.status == "ok":
            out[(r.pair, r.label)] = dict((r.search or {}).get("chosen") or {})
    return out


def sitting(env: dict) -> dict:
    """What a record's ``env`` says of the sitting that made it: harness commit, torch, threads, CPU."""
    return {"git": (env.get("git_sha") or "?")[:12] + ("-dirty" if str(env.get("git_sha")).endswith("-dirty") else ""),
            "torch": (env.get("packages") or {}).get("torch") or "?", "threads": env.get("torch_threads") or "?",
            "cpu": f"{env.get('device_name') or '?'}, {env.get('cpu_count') or '?'} cores"}


def sittings(envs) -> Counter:
    """Distinct sittings among records' ``env`` s, with how many records each."""
    return Counter(tuple(sitting(e).items()) for e in envs)


def describe(found: Counter, counts: bool = True) -> list[str]:
    return [f"git {d['git']} | torch {d['torch']} | threads {d['threads']} | CPU {d['cpu']}"
            + (f" — {n} record(s)" if counts else "")
            for key, n in found.most_common() for d in [dict(key)]] or ["no records"]


def mismatch(a: Counter, b: Counter) -> bool:
    """Whether two sets of sittings differ in torch version or thread count (either alone moves metrics)."""
    def pick(c):
        return {(dict(k)["torch"], dict(k)["threads"]) for k in c}

    return pick(a) != pick(b)


def print_sittings(protocol: Counter, variants: Counter, variants_title: str, file=sys.stdout,
                   counts: bool = True) -> None:
    for title, found, n in (("protocol (committed records)", protocol, True), (variants_title, variants, counts)):
        for i, line in enumerate(describe(found, n)):
            print(f"{title if i == 0 else '':<30} {line}", file=file)


def variant_suite(base: dict, picks: dict, wanted: list[str]) -> tuple[dict, dict]:
    """A suite with one cell per (variant, pair, strategy) at the protocol's chosen values, and the
    map label → (variant, pair, protocol label)."""
    from harness.config.schema import TRAIN_KEYS

    strategies, cells = [], {}
    pairs = {p["id"]: p for p in base["pairs"]}
    blocks = {}
    for item in base["strategies"]:
        name, params = (item, {}) if isinstance(item, str) else next(iter(item.items()))
        blocks[(params or {}).get("label", name)] = (name, dict(params or {}))
    for group in wanted:
        for title, pair, labels, change in VARIANTS[group]:
            for label in labels:
                name, params = blocks[label]
                params = {k: v for k, v in params.items() if k != "label"}
                point = picks.get((pair, label), {})
                update = {"lr": HAND_PICKED[pair][label]} if change == "hand" else dict(change)
                new = f"{label}-{group}-{len(cells)}"
                block = {**params, **point, **update, "label": new}
                strategies.append({name: block})
                cells[new] = (title, pair, label, sorted(set(update) & set(TRAIN_KEYS)) or sorted(update))
    suite = {"suite": "protocol-effects", "seeds": base["seeds"], "defaults": {
        k: v for k, v in base["defaults"].items() if k != "search"}, "pairs": [], "strategies": strategies}
    for pid in sorted({c[1] for c in cells.values()}):
        pair = dict(pairs[pid])
        pair["train"] = {k: v for k, v in (pair.get("train") or {}).items() if k != "search"}
        pair["strategies"] = [lab for lab, c in cells.items() if c[1] == pid]
        pair["overrides"] = {lab: pair_override for lab, c in cells.items() if c[1] == pid
                             for pair_override in [_aux_override(pairs[pid], c[2])] if pair_override}
        if not pair["overrides"]:
            pair.pop("overrides")
        suite["pairs"].append(pair)
    return suite, cells


def _aux_override(pair: dict, label: str) -> dict:
    """A pair's override of a strategy's own params (multitask's tasks), searches dropped."""
    block = dict((pair.get("overrides") or {}).get(label) or {})
    block.pop("search", None)
    return block


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results", help="results root holding the strategies run")
    p.add_argument("--only", default="bn,dropout,probe,lr", help="variant groups: bn, dropout, probe, lr")
    p.add_argument("--executor", choices=["local", "pool"], default="local")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--allow-env-mismatch", action="store_true",
                   help="run and print even when the committed records' torch version or thread count differs "
                        "from this sitting's (the differences then mix the change with the sitting)")
    args = p.parse_args(argv)
    root = Path(args.results)
    records, _ = scan(root / "strategies")
    if not records:
        print(f"no records of suites/strategies.yaml under {root / 'strategies'}: run the suite first", file=sys.stderr)
        return 2
    picks = chosen(records)
    base = yaml.safe_load(SUITE.read_text())
    suite, cells = variant_suite(base, picks, [g.strip() for g in args.only.split(",") if g.strip()])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "protocol-effects.yaml"
        path.write_text(yaml.safe_dump(suite, sort_keys=False))
        runs = expand(load_suite(path))
    from harness.executors.base import run_plan

    options = ExecOptions(cache_dir=root / ".cache")
    executor = None
    if args.executor == "pool":
        from harness.executors.pool import PoolExecutor

        executor = PoolExecutor(options, workers=args.workers)
    # Both sides from one sitting: the committed finals compared against vs the runs about to be made.
    import torch

    from harness.run.cost import environment

    used = {(pair, base_label) for _title, pair, base_label, _ in cells.values()}
    protocol_env = sittings(r.env for r in records
                            if r.role == "final" and r.status == "ok" and (r.pair, r.label) in used)
    now_env = {**environment(torch.device("cpu")), "device_name": platform.processor() or "cpu",
               "cpu_count": os.cpu_count(),
               "torch_threads": executor.threads if executor is not None else torch.get_num_threads()}
    if mismatch(protocol_env, sittings([now_env])):
        print_sittings(protocol_env, sittings([now_env]), "this sitting (runs made now)", file=sys.stderr, counts=False)
        if not args.allow_env_mismatch:
            print("REFUSED: the committed records were made with another torch version or thread count than the "
                  "runs this sitting would make (a thread count alone moves metrics): the differences would mix "
                  "the protocol change with the sitting. Match them (e.g. --executor pool --workers N for N "
                  "threads per run = cores / N), or pass --allow-env-mismatch", file=sys.stderr)
            return 3
        print("WARNING: torch version or thread count differs between the sides (--allow-env-mismatch)",
              file=sys.stderr)
    t0 = time.perf_counter()
    out = run_plan(runs, root / "protocol-effects", options, executor=executor)
    print(f"{len(out.done)} run(s) in {time.perf_counter() - t0:.0f} s, {len(out.skipped)} reused", file=sys.stderr)
    variants, _ = scan(root / "protocol-effects")
    by_cell: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for r in records + variants:
        if r.role == "final" and r.status == "ok" and r.primary_metric:
            by_cell[(r.pair, r.label)][r.seed] = r.metrics[r.primary_metric]
    # the variant records compared may include reused ones of an earlier sitting: check what they say
    variant_env = sittings(r.env for r in variants
                           if r.role == "final" and r.status == "ok" and r.label in cells)
    env_differs = mismatch(protocol_env, variant_env)
    print_sittings(protocol_env, variant_env, "variant records")
    if env_differs:
        print("WARNING: the two sides differ in torch version or thread count: every difference below mixes the "
              "change with the sitting" + ("" if args.allow_env_mismatch else " (exit status 3)"))
    print(f"{'pair':<15} {'strategy':<19} {'variant':<21} {'protocol %':>14} {'variant %':>14} "
          f"{'variant − protocol (95% CI), pts':>34}")
    for label, (title, pair, base_label, _) in cells.items():
        a, b = by_cell.get((pair, base_label), {}), by_cell.get((pair, label), {})
        if not a or not b:
            print(f"{pair:<15} {base_label:<19} {title:<21} missing records")
            continue
        g = paired_gain(b, a)
        sa, sb = summarize(list(a.values())), summarize(list(b.values()))
        interval = f" [{100 * g.low:+.2f}, {100 * g.high:+.2f}]" if g.n > 1 else ""
        print(f"{pair:<15} {base_label:<19} {title:<21} {100 * sa.mean:6.2f} ± {100 * sa.std:5.2f} "
              f"{100 * sb.mean:6.2f} ± {100 * sb.std:5.2f} {100 * g.mean:+22.2f}{interval}")
    return 3 if env_differs and not args.allow_env_mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
