"""The leaderboard renderer against golden files (set UPDATE_GOLDEN=1 to rewrite them)."""

from __future__ import annotations

import os
from pathlib import Path

from harness.report.aggregate import aggregate
from harness.report.markdown import render
from tests.factories import make_record

ASSETS = Path(__file__).resolve().parents[1] / "assets"
GOLDEN = ASSETS / "leaderboard_golden.md"
GOLDEN_FULL = ASSETS / "leaderboard_full_golden.md"


def rec(pair, label, seed, acc, status="ok", task="image-classification", primary="accuracy", cost=None,
        per_label=None, curve=(), strategy=None, smoke=False, budget=None, search=None, **metrics):
    return make_record(
        label, seed, acc, run_id=f"{pair}.{label}.s{seed}-0", pair=pair, suite="golden", strategy=strategy,
        status=status, task=task, primary_metric=primary, smoke=smoke, budget=budget or {}, search=search,
        extra={**metrics, **({"per_label": per_label} if per_label else {})}, curve=list(curve),
        error=None if status == "ok" else {"type": "Diverged", "message": "loss is nan at step 7"},
        cost=cost if cost is not None else {
            "train_s": 10.0 + seed, "peak_rss_mb": 900.0, "trainable_params": 1000 if label == "linear_probe" else 50_000,
            "total_params": 50_000})


def records():
    out = []
    for seed, (s, lp, ft) in enumerate([(0.70, 0.90, 0.95), (0.72, 0.91, 0.96), (0.74, 0.92, 0.97)]):
        out += [rec("cnn-digits", "scratch", seed, s, macro_f1=s - 0.01),
                rec("cnn-digits", "linear_probe", seed, lp, macro_f1=lp - 0.01),
                rec("cnn-digits", "full_finetune", seed, ft, macro_f1=ft - 0.01) if seed != 2 else
                rec("cnn-digits", "full_finetune", seed, None, status="failed")]
        out.append(rec("bert-ner", "full_finetune", seed, 0.40 + seed / 100, task="token-classification",
                       primary="f1", precision=0.5, recall=0.35))
    return out


def full_records():
    """Every section: costs measured on a GPU, a price, NER per-entity F1, curves, a relabelled strategy."""
    out = []
    for seed in range(3):
        for label, acc, wall, trainable in (("scratch", 0.60 + seed / 50, 30.0, 5_000_000),
                                            ("linear_probe", 0.86 + seed / 100, 8.0 + seed, 12_810),
                                            ("full_finetune", 0.87 + seed / 50, 40.0, 5_000_000),
                                            ("ft-low-lr", 0.80 + seed / 100, 41.0, 5_000_000)):
            cost = {"wall_s": wall, "train_s": wall - 3, "eval_s": 2.0, "feature_s": 4.0 if label == "linear_probe" else 0.0,
                    "samples_per_s": 1000.0 / wall, "peak_rss_mb": 2048.0, "peak_gpu_mem_mb": 1500.0 + seed,
                    "peak_gpu_reserved_mb": 2048.0, "train_flops": 3.2e12 if label != "linear_probe" else 1.1e9,
                    "energy_j": 900.0 + 10 * seed, "gpu_hours": wall / 3600, "price": wall / 3600 * 2.5,
                    "trainable_params": trainable, "total_params": 5_000_000}
            curve = [{"epoch": 1, "val_accuracy": acc - 0.1}, {"epoch": 2, "val_accuracy": acc}]
            strategy = "full_finetune" if label == "ft-low-lr" else None
            ref = {"epochs": 2, "max_steps": None, "max_train_samples": None, "batch_size": 32, "grad_accum": 1}
            epochs = 10 if label == "linear_probe" else 2
            budget = {**ref, "epochs": epochs, "steps": 35 * epochs, "examples_seen": 1120 * epochs, "optimizer": "adamw",
                      "lr": 1e-2 if label == "linear_probe" else 1e-3, "precision": "bf16", "reference": ref,
                      "differs": ["epochs"] if epochs != 2 else []}
            search = {"space": {"lr": [1e-4, 3e-4, 1e-3]}, "chosen": {"lr": 1e-3}, "edge": ["lr"], "val": 0.9,
                      "selection_seeds": [0], "trials": [{}, {}, {}], "tuning_wall_s": 120.0} \
                if label == "full_finetune" else None
            out.append(rec("effnet-digits", label, seed, acc, cost=cost, curve=curve, strategy=strategy,
                           budget=budget, search=search, macro_f1=acc - 0.02))
            ner = {"scratch": 0.05, "linear_probe": 0.20, "full_finetune": 0.35, "ft-low-lr": 0.30}[label] + seed / 100
            per = {"person": {"f1": ner + 0.1, "support": 40}, "location": {"f1": ner - 0.05, "support": 30},
                   "product": {"f1": 0.0, "support": 5}}
            out.append(rec("minilm-wnut16", label, seed, ner, task="token-classification", primary="f1",
                           cost={**cost, "wall_s": wall * 2}, per_label=per, strategy=strategy,
                           precision=ner + 0.05, recall=ner - 0.05))
    out.append(rec("minilm-wnut16", "scratch", 3, None, status="timeout"))
    return out


ASSET_LINKS = {"effnet-digits": {"pareto": "golden/effnet-digits-pareto.png", "curve": "golden/effnet-digits-curve.png"},
               "minilm-wnut16": {"pareto": "golden/minilm-wnut16-pareto.png"}}


def check_golden(text: str, path: Path) -> None:
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_leaderboard_matches_golden():
    check_golden(render(aggregate(records())), GOLDEN)


def test_full_leaderboard_matches_golden():
    check_golden(render(aggregate(full_records()), assets=ASSET_LINKS), GOLDEN_FULL)


def test_render_is_deterministic_whatever_the_record_order():
    recs = full_records()
    assert render(aggregate(recs)) == render(aggregate(list(reversed(recs))))


def test_failed_seeds_counted_and_ranked_by_primary():
    rows = [r for r in aggregate(records()) if r.pair == "cnn-digits"]
    assert [r.label for r in rows] == ["full_finetune", "linear_probe", "scratch"]
    ft = rows[0]
    assert (ft.n_ok, ft.n_failed) == (2, 1)
    assert ft.metrics["accuracy"].mean == 0.955
    text = render(aggregate(records()))
    assert "2/3 ⚠" in text and "loss is nan at step 7" in text
    # gain vs scratch, seed-paired: ft − scratch on seeds 0,1 = 0.25, 0.24
    assert "+24.50 [+18.15, +30.85]" in text


def test_sections_of_the_full_report():
    text = render(aggregate(full_records()), assets=ASSET_LINKS)
    assert "## Summary" in text and "### effnet-digits" in text and "### minilm-wnut16" in text
    assert "Per-entity-type F1 (%, mean over seeds):" in text
    assert "| strategy | location | person | product |" in text
    assert "![accuracy vs wall_s, effnet-digits](golden/effnet-digits-pareto.png)" in text
    assert "![validation accuracy per epoch, effnet-digits](golden/effnet-digits-curve.png)" in text
    assert "`ft-low-lr` (full_finetune)" in text
    assert "energy J" in text and "price" in text and "train FLOPs" in text and "3.20T" in text
    assert "s3: timeout" in text and "3/4 ⚠" in text
    # the image pair has no per-entity table: it appears once, under the NER pair
    assert text.count("Per-entity-type F1") == 1
    assert text.index("Per-entity-type F1") > text.index("### minilm-wnut16")


def test_smoke_banner():
    text = render(aggregate([rec("p", "scratch", 0, 0.5, smoke=True)]))
    assert "**Smoke run**" in text and "not results" in text
