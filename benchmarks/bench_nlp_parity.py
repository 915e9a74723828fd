"""Parity benchmark: harness full fine-tune vs the Hugging Face ``Trainer`` token-classification
recipe on the offline pair (packaged all-MiniLM-L6-v2 → WNUT-16), measured in one run.

Both sides read the same sentences: the harness's fixed-seed split of WNUT-16
(``harness.targets.tokens`` + ``split_indices``, ``split_seed`` 0) and the same training subset
(``max_train_samples`` drawn with the harness's subsample seed). The Trainer side re-tokenises the
words with the recipe's own ``tokenize_and_align_labels`` (first sub-word labelled) and the script
checks that its input ids equal the harness's, token for token. Same seed, head init (N(0, 0.02),
zero bias: ``head_init: auto``), optimiser (AdamW, no weight decay), learning rate, linear
schedule with the same warm-up steps, batch size, epochs, gradient clipping, dropout and
``max_length``. Test predictions of both are scored by the same
function (seqeval, strict IOB2; words past ``max_length`` predicted O on both sides).

Throughput is real (non-padding) training tokens per second of training time, and, because wall
time on a shared machine measures the other jobs as much as the code, also per second of this
process's CPU time (``--threads 1`` keeps idle OpenMP threads from spinning into that figure).
Both clocks (wall: ``perf_counter``; CPU: ``process_time``) cover the same thing on both sides, the
training epochs' steps, summed over epochs, and nothing else:

* harness: its meter's ``train`` phase (``cost.train_s``, and the process CPU time over the same
  phase): per epoch, the loop over the training batches — making batches, forward, backward,
  clipping, the optimizer and scheduler steps (the first step also counts its FLOPs, a cost the
  Trainer has not). Outside it: data loading, model, optimizer and scheduler set-up, the
  per-epoch validation and the test.
* Trainer: a ``TrainerCallback`` from ``on_epoch_begin`` to ``on_epoch_end`` of each epoch: the
  dataloader's iteration, forward, backward, clipping, the optimizer and scheduler steps. Outside
  it: everything ``train()`` does before its first epoch (dataloader, optimizer and scheduler
  set-up, accelerate's preparation) and after its last (final metrics, clean-up), and
  ``predict``. (``train_runtime``, which also spans the start and the end of the training loop,
  is kept in the JSON rows for reference.)

Both sides are cold alike: each run is a fresh process whose first steps pay lazy initialisation.
The sides run one after the other, their order rotating from seed to seed, so that machine load
that drifts over a run does not fall on one side.

Every run is a fresh process of this script (``--in-process`` runs them all in this one, for
debugging): the harness sets glibc's allocator once per process for good (``harness.run.alloc``),
so a Trainer run in the same process would inherit it. The Trainer runs twice per seed: as a user
runs it (stock glibc, ``trainer``), and with the harness's allocator setting given by environment
variables (``trainer+malloc``: ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647``), so the
table shows what the allocator is worth apart from the rest (``--trainer-allocator`` picks one).

    python benchmarks/bench_nlp_parity.py                       # 2 seeds, 800 sentences, 2 epochs (CPU: minutes)
    python benchmarks/bench_nlp_parity.py --seeds 0 1 2 --epochs 3 --max-train 0   # full train split
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

CPU_SECONDS: dict[str, float] = {}


def count_cpu_time() -> None:
    """Also add process CPU time to each harness phase (robust to other jobs on a shared machine)."""
    import contextlib

    from harness.run import cost

    wall_phase = cost.Meter.phase

    @contextlib.contextmanager
    def phase(self, name):
        t = time.process_time()
        try:
            with wall_phase(self, name):
                yield
        finally:
            CPU_SECONDS[name] = CPU_SECONDS.get(name, 0.0) + time.process_time() - t

    cost.Meter.phase = phase


def mega_batches(n: int) -> None:
    """Ablation (with --group-by-length): length grouping within mega-batches of ``n`` batches
    instead of 50."""
    from harness.targets.base import TokenSplit

    TokenSplit.mega_batches = n


def token_sum_loss(data, batch_size: int) -> None:
    """Ablation: the token loss summed over the batch and divided by the train split's mean number
    of labelled tokens per batch (a constant) instead of by the batch's own count: every labelled
    token weighs the same, however the batches are grouped."""
    import torch.nn.functional as F

    from harness.run import loop

    labelled = sum(sum(1 for t in row if t != -100) for row in data.splits["train"].labels)
    per_batch = labelled / math.ceil(len(data.splits["train"]) / batch_size)

    def task_loss(logits, labels):
        if logits.ndim == 3:
            logits, labels = logits.flatten(0, 1), labels.flatten()
            return F.cross_entropy(logits.float(), labels, ignore_index=-100, reduction="sum") / per_batch
        return F.cross_entropy(logits.float(), labels, ignore_index=-100)

    loop.task_loss = task_loss


def harness_run(args, seed: int, workdir: Path) -> dict:
    from harness.plan import expand
    from harness.run.execute import ExecOptions, execute
    from harness.suite import load_suite

    train = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "scheduler": "linear",
             "warmup_ratio": args.warmup_ratio, "weight_decay": 0.0, "max_grad_norm": 1.0,
             "precision": args.precision, "group_by_length": args.group_by_length}
    if args.max_train:
        train["max_train_samples"] = args.max_train
    if args.max_eval:
        train["max_eval_samples"] = args.max_eval
    suite = workdir / "parity.yaml"
    suite.write_text(json.dumps({  # JSON is YAML
        "suite": "nlp-parity", "seeds": [seed], "defaults": train,
        "pairs": [{"id": "minilm-wnut16", "source": {"model": "packaged/all-MiniLM-L6-v2", "max_length": args.max_length,
                                                "head_init": args.head_init},
                   "target": {"dataset": "packaged/wnut16", "task": "token-classification"}}],
        "strategies": ["full_finetune"]}))
    (spec,) = expand(load_suite(suite))
    from harness.run import alloc

    alloc.claim()  # as `harness run` is: the allocator setting applies only in the harness's own processes
    CPU_SECONDS.clear()
    rec = execute(spec, ExecOptions(cache_dir=workdir / "cache"))
    if rec.status != "ok":
        raise SystemExit(f"harness run failed: {rec.error}")
    if (rec.config["notes"].get("host_memory") == "default" and alloc.enabled() and sys.platform.startswith("linux")
            and str(rec.env.get("device", "cpu")).startswith("cpu")):  # the setting is for CPU runs only
        raise SystemExit("the harness side ran without its allocator setting: the comparison would not be the one quoted")
    return {"f1": rec.metrics["f1"], "precision": rec.metrics["precision"], "recall": rec.metrics["recall"],
            "train_s": rec.cost["train_s"], "train_cpu_s": CPU_SECONDS.get("train"), "steps": rec.cost["steps"],
            "host_memory": rec.config["notes"].get("host_memory")}


def shared_data(args):
    """The harness's split and training subset, as words + tags + the harness's encodings."""
    from harness.registry import SOURCES, TARGETS
    from harness.run.execute import SUBSAMPLE_SEED, limit
    from harness.targets.base import split_indices
    from harness.targets.tokens import read_conll, sentence_keys, wnut16_path

    backbone = SOURCES.get("packaged").build("all-MiniLM-L6-v2", {"max_length": args.max_length}, pretrained=False)
    data = TARGETS.get("packaged").load("wnut16", {}, "token-classification", backbone)
    full_train, full_test = len(data.splits["train"]), len(data.splits["test"])
    data = limit(data, args.max_train or None, args.max_eval or None)
    sentences = read_conll(wnut16_path())
    # the wnut16 target's defaults, repeated sentences kept in one split (as token_target_data splits)
    parts = split_indices(len(sentences), 0.15, 0.2, 0, keys=sentence_keys(sentences))
    assert len(parts["train"]) == full_train and len(parts["test"]) == full_test

    def sample(n_all, n):  # what Split.sample draws
        if not n or n >= n_all:
            return np.arange(n_all)
        return np.sort(np.random.default_rng(SUBSAMPLE_SEED).permutation(n_all)[:n])

    words = {"train": [sentences[parts["train"][i]][0] for i in sample(full_train, args.max_train)],
             "test": [sentences[parts["test"][i]][0] for i in sample(full_test, args.max_eval)]}
    return data, words, backbone.input_spec.tokenizer


def trainer_run(args, seed: int, data, words, tokenizer, workdir: Path) -> dict:
    from datasets import Dataset
    from transformers import (
        AutoModelForTokenClassification,
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )

    from harness.metrics import Predictions, seqeval_strict
    from harness.sources.packaged import minilm_dir

    names = data.label_names
    label2id = {n: i for i, n in enumerate(names)}

    def tokenize_and_align_labels(examples):  # the recipe (run_ner.py / course chapter 7), label_all_tokens=False
        enc = tokenizer(examples["tokens"], truncation=True, max_length=args.max_length, is_split_into_words=True)
        labels = []
        for i, tags in enumerate(examples["tags"]):
            prev, row = None, []
            for wid in enc.word_ids(batch_index=i):
                row.append(-100 if wid is None or wid == prev else label2id[tags[wid]])
                prev = wid
            labels.append(row)
        enc["labels"] = labels
        return enc

    ds = {}
    for k in ("train", "test"):
        split = data.splits[k]
        raw = Dataset.from_dict({"tokens": words[k], "tags": [list(t) for t in split.sequences]})
        ds[k] = raw.map(tokenize_and_align_labels, batched=True, remove_columns=["tokens", "tags"])
        if list(map(list, ds[k]["input_ids"])) != [list(x) for x in split.input_ids] or \
                list(map(list, ds[k]["labels"])) != [list(x) for x in split.labels]:
            raise SystemExit(f"the Trainer's {k} data differs from the harness's: not a parity run")

    set_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(
        minilm_dir(), num_labels=len(names), id2label=dict(enumerate(names)), label2id=label2id)
    steps_per_epoch = max(1, math.ceil(len(ds["train"]) / args.batch_size))
    cuda = torch.cuda.is_available()
    targs = TrainingArguments(
        output_dir=str(workdir / f"trainer-{seed}"), per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=2 * args.batch_size, learning_rate=args.lr, num_train_epochs=args.epochs,
        lr_scheduler_type="linear", warmup_steps=int(args.warmup_ratio * steps_per_epoch * args.epochs),
        weight_decay=0.0, max_grad_norm=1.0, seed=seed, data_seed=seed, eval_strategy="no", save_strategy="no",
        logging_strategy="no", report_to=[], disable_tqdm=True, use_cpu=not cuda,
        bf16=cuda and args.precision == "bf16", dataloader_num_workers=0)

    class EpochClock(TrainerCallback):
        """Wall and process CPU seconds of the Trainer's epochs (``on_epoch_begin`` → ``on_epoch_end``),
        summed: its training steps, as the harness's train phase spans each epoch's steps."""

        wall = cpu = 0.0

        def on_epoch_begin(self, args, state, control, **kwargs):
            self.t0 = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, args, state, control, **kwargs):
            self.wall += time.perf_counter() - self.t0[0]
            self.cpu += time.process_time() - self.t0[1]

    clock = EpochClock()
    trainer = Trainer(model=model, args=targs, train_dataset=ds["train"],
                      data_collator=DataCollatorForTokenClassification(tokenizer), callbacks=[clock])
    out = trainer.train()
    pred = trainer.predict(ds["test"])
    logits, labels = pred.predictions, pred.label_ids
    mask = labels != -100
    y_pred = logits.argmax(-1)[mask]
    seq = np.broadcast_to(np.arange(len(labels))[:, None], labels.shape)[mask]
    m = seqeval_strict(Predictions(labels[mask], y_pred, names, seq, data.splits["test"].sequences))
    return {"f1": m["f1"], "precision": m["precision"], "recall": m["recall"],
            "train_s": clock.wall, "train_cpu_s": clock.cpu, "train_runtime": out.metrics["train_runtime"],
            "steps": out.global_step}


def summary(rows: list[dict], key: str) -> str:
    vals = [r[key] for r in rows]
    sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
    return f"{statistics.mean(vals):.4f} ± {sd:.4f}"


# the harness's own setting (harness.run.alloc), given to a Trainer process by glibc's variables
RETAINED_MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}
SIDES = {"harness": "harness full_finetune", "trainer": "HF Trainer recipe (stock glibc)",
         "trainer+malloc": "HF Trainer recipe + MALLOC_* as the harness sets it"}


def side_env(side: str) -> dict[str, str]:
    """A run's environment: none of the caller's allocator variables (the harness would leave them
    in force and the Trainer would run with them), plus the harness's setting for ``trainer+malloc``."""
    from harness.run.alloc import OTHER_ALLOCATORS, USER_SETTINGS

    if any(a in os.environ.get("LD_PRELOAD", "") for a in OTHER_ALLOCATORS):
        raise SystemExit(f"LD_PRELOAD={os.environ['LD_PRELOAD']} replaces glibc's allocator on every side: "
                         "the sides would not differ as labelled; run without it")
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    return {**env, **RETAINED_MALLOC_ENV} if side == "trainer+malloc" else env


def check_in_process_env(sides: list[str]) -> None:
    """In one process the allocator is what the environment says: refuse a label it would belie."""
    from harness.run.alloc import USER_SETTINGS

    chosen = {k: os.environ[k] for k in USER_SETTINGS if k in os.environ}
    if "trainer+malloc" in sides and chosen != RETAINED_MALLOC_ENV:
        raise SystemExit(f"--in-process trainer+malloc needs exactly {RETAINED_MALLOC_ENV} in the environment "
                         f"(glibc reads them at start), not {chosen}; drop --in-process")
    if "trainer" in sides and chosen:
        raise SystemExit(f"the trainer side is stock glibc, but {chosen} is set; unset it or drop --in-process")


def run_in_process(args, sides: list[str], workdir: Path) -> tuple[dict[str, list[dict]], int, dict]:
    """Every (seed, side) run in this process, one after the other."""
    data, words, tokenizer = shared_data(args)
    if args.token_sum_loss:
        token_sum_loss(data, args.batch_size)
    train_tokens = sum(len(x) for x in data.splits["train"].input_ids) * args.epochs
    rows: dict[str, list[dict]] = {side: [] for side in sides}
    for seed in args.seeds:
        for side in sides:
            r = harness_run(args, seed, workdir) if side == "harness" else \
                trainer_run(args, seed, data, words, tokenizer, workdir)
            rows[side].append(finish_row(r, side, seed, train_tokens))
    shape = {"train": len(data.splits["train"]), "test": len(data.splits["test"])}
    return rows, train_tokens, shape


def finish_row(r: dict, side: str, seed: int, train_tokens: int) -> dict:
    r["seed"], r["tokens_per_s"] = seed, train_tokens / r["train_s"]
    r["tokens_per_cpu_s"] = train_tokens / r["train_cpu_s"]
    print(f"seed {seed} {side:<14} f1={r['f1']:.4f} P={r['precision']:.4f} R={r['recall']:.4f} "
          f"steps={r['steps']} train_s={r['train_s']:.1f} cpu_s={r['train_cpu_s']:.1f} "
          f"tokens/s={r['tokens_per_s']:.0f} tokens/cpu_s={r['tokens_per_cpu_s']:.0f}"
          + (f" host_memory={r['host_memory']}" if r.get("host_memory") else ""), flush=True)
    return r


def run_in_processes(args, argv: list[str], sides: list[str], workdir: Path) -> tuple[dict[str, list[dict]], int, dict]:
    """Every (seed, side) run in a fresh process of this script, alternating sides per seed."""
    rows: dict[str, list[dict]] = {side: [] for side in sides}
    train_tokens, shape = 0, {}
    for n, seed in enumerate(args.seeds):
        for side in sides[n % len(sides):] + sides[:n % len(sides)]:
            out = workdir / f"{side}-{seed}.json"
            # argparse keeps an option's last value: these override the caller's
            cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--in-process", "--quiet",
                   "--sides", side, "--seeds", str(seed), "--json", str(out)]
            done = subprocess.run(cmd, env=side_env(side))
            if done.returncode:
                raise SystemExit(f"the {side} run of seed {seed} failed (exit {done.returncode}): {' '.join(cmd)}")
            blob = json.loads(out.read_text())
            train_tokens, shape = blob["train_tokens"], blob["shape"]
            rows[side].append(blob["rows"][side][0])
    return rows, train_tokens, shape


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--max-train", type=int, default=800, help="training sentences (0: the whole train split)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--warmup-ratio", type=float, default=0.1)
    ap.add_argument("--max-eval", type=int, default=0, help="val/test sentences (0: all)")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"], help="on CUDA (CPU runs fp32 on both sides)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--sides", nargs="+", choices=list(SIDES), default=list(SIDES),
                    help="which runs to make per seed (default all three; the ratios are against each Trainer side)")
    ap.add_argument("--only", choices=["harness", "trainer"], help="run one side (ablations); same as --sides SIDE")
    ap.add_argument("--in-process", action="store_true",
                    help="run every side in this process (the harness's allocator setting then stays for the Trainer)")
    ap.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)  # a child run: rows only
    ap.add_argument("--group-by-length", action="store_true",
                    help="ablation: the harness's group_by_length (batches of like lengths; the default shuffles plainly, as the Trainer)")
    ap.add_argument("--mega-batches", type=int, help="ablation: harness length grouping within this many batches (default 50)")
    ap.add_argument("--token-sum-loss", action="store_true",
                    help="ablation: harness token loss divided by a constant (mean labelled tokens per batch)")
    ap.add_argument("--head-init", default="auto", choices=["auto", "pytorch", "normal"],
                    help="the harness's source.head_init (auto: BERT's classifier init, as the Trainer's model; "
                         "pytorch: ablation, nn.Linear's default)")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(argv)
    sides = [args.only] if args.only else args.sides
    if args.in_process and "trainer+malloc" in sides and sides != ["trainer+malloc"]:
        raise SystemExit("trainer+malloc needs its own process (glibc reads MALLOC_* at start): drop --in-process")
    if args.in_process:
        check_in_process_env(sides)

    from harness.run.process import quiet_libraries

    quiet_libraries()
    count_cpu_time()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mega_batches:
        mega_batches(args.mega_batches)
    import datasets

    datasets.disable_progress_bars()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.in_process:
            rows, train_tokens, shape = run_in_process(args, sides, Path(tmp))
        else:
            rows, train_tokens, shape = run_in_processes(args, argv, sides, Path(tmp))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "device": device, "train_tokens": train_tokens,
              "shape": shape, "rows": rows}
    if args.quiet:
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0
    print(f"\nMiniLM-L6 → WNUT-16, {shape['train']} train sentences × {args.epochs} epoch(s), "
          f"{shape['test']} test sentences, batch {args.batch_size}, lr {args.lr}, max_length {args.max_length}, "
          f"{device}; {train_tokens} real train tokens per run; "
          f"{'one process' if args.in_process else 'a process per run'}; {time.perf_counter() - t0:.0f}s in all\n")
    print("| | entity F1 (test, mean ± sd) | train tokens/s (wall) | train tokens per CPU-second | seeds |")
    print("|---|---|---|---|---|")
    for side in sides:
        tps = statistics.mean(r["tokens_per_s"] for r in rows[side])
        tpc = statistics.mean(r["tokens_per_cpu_s"] for r in rows[side])
        print(f"| {SIDES[side]} | {summary(rows[side], 'f1')} | {tps:.0f} | {tpc:.0f} | {len(rows[side])} |")
    result["ratios"] = {}
    trainer_sides = [s for s in sides if s != "harness"] if "harness" in sides else []
    for other in trainer_sides:
        ratios = [h["tokens_per_s"] / t["tokens_per_s"] for h, t in zip(rows["harness"], rows[other], strict=True)]
        cpu_ratios = [h["tokens_per_cpu_s"] / t["tokens_per_cpu_s"] for h, t in zip(rows["harness"], rows[other], strict=True)]
        gap = abs(statistics.mean(r["f1"] for r in rows["harness"]) - statistics.mean(r["f1"] for r in rows[other]))
        result["ratios"][other] = {"wall": ratios, "cpu": cpu_ratios, "f1_gap": gap}
        print(f"\nharness / {other}: throughput {statistics.mean(ratios):.2f}× (per seed: "
              f"{', '.join(f'{x:.2f}' for x in ratios)}; target ≥ 1.2×); per CPU-second "
              f"{statistics.mean(cpu_ratios):.2f}× (per seed: {', '.join(f'{x:.2f}' for x in cpu_ratios)}); "
              f"F1 gap between the means {gap:.4f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
