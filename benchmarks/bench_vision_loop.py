"""Benchmark (a): the harness fine-tune loop vs a hand-written plain PyTorch loop, same model,
batch, precision, optimiser (AdamW, fused wherever the harness's ``build_optimizer`` fuses it, with
the harness's two parameter groups — weights with decay, biases and norms without — cosine
schedule, clip 1.0) and data work (uint8 images
padded-cropped, flipped, resized and normalised per batch on the device). Prints the images/s
ratio harness / plain (target ≥ 0.97), measured in one run.

Throughput is marginal (see ``bench_vision_common``): runs of ``--steps1`` and ``--steps2``
steps, each timed around the whole call, so fixed costs — the harness's one FLOP-counted first
step and its tiny validation/test, optimizer construction, cuDNN autotuning, compilation —
cancel; the whole-run ratio at ``--steps2`` is printed too. On a CPU the clock is the process's
CPU time (``--clock``), which other jobs on a shared machine do not inflate.
What each side's clock covers, alike on both: the whole training call (harness: ``fit`` with its
train phase, FLOP-counted first step and tiny validation/test; plain: ``plain_train``), the data
already in memory, model construction (and the plain model's copy of the harness's weights)
outside the clock. Both are warm: before any timing, one untimed call of each side
(``--steps1`` steps) pays the first imports, lazy initialisation, allocator growth and autotuning.
Then each repeat times the ``--steps1`` runs and the ``--steps2`` runs, harness and plain back to
back, and which side goes first alternates from repeat to repeat (harness first in repeats 1, 3, …,
plain first in 2, 4, …), so machine load that drifts hits both alike; the figures use the median
of ``--repeats`` runs of each kind, and the ratio from the fastest runs is printed beside it
(when the two disagree by more than the target's margin, the machine is too noisy to decide).

    python benchmarks/bench_vision_loop.py                          # CPU: resnet18 at 64 px, minutes
    python benchmarks/bench_vision_loop.py --model efficientnet_lite0 --size 64
    python benchmarks/bench_vision_loop.py --device cuda --model resnet50 --size 224 --batch-size 128 \\
        --precision bf16 --channels-last --steps1 20 --steps2 120        # a GPU box
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vision_common import (  # noqa: E402
    env_line,
    harness_fit,
    marginal,
    median,
    set_threads,
    synthetic_images,
    timed,
    vision_data,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def harness_model(name: str, classes: int):
    from harness.registry import SOURCES
    from harness.sources.nets import TransferModel

    if name == "efficientnet_lite0":
        backbone = SOURCES.get("packaged").build(name, {}, pretrained=True)
    else:
        backbone = SOURCES.get("torchvision").build(name, {"weights": None}, pretrained=False)
    return TransferModel(backbone, classes)


def plain_model(name: str, classes: int, like) -> torch.nn.Module:
    """The same network as the harness's ``like``, with its weights: the same values matter on a
    CPU, where denormal numbers in pretrained weights can slow every op."""
    if name == "efficientnet_lite0":
        import timm

        model = timm.create_model(name, num_classes=classes)
    else:
        import torchvision

        model = torchvision.models.get_model(name, weights=None, num_classes=classes)
    missing, unexpected = model.load_state_dict(like.backbone.body.state_dict(), strict=False)
    assert not unexpected and all(k.split(".")[0] in ("fc", "classifier") for k in missing), (missing, unexpected)
    return model


def plain_train(model, images, labels, steps, batch_size, size, device, precision, channels_last, lr, seed=0):
    """What one writes by hand: resident uint8 data, per-batch crop/flip/resize/normalise, AdamW."""
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    from harness.run.loop import fused_ok
    from harness.strategies.base import is_no_decay

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    # the harness's optimizer exactly (Strategy.param_groups → decay_groups, build_optimizer): two
    # groups, weights with decay (the harness's default weight_decay, 0) and biases/norms (1-d) without,
    # in that order; AdamW fused where fused takes the parameters
    groups = [{"params": [p for n, p in named if not is_no_decay(n, p)], "weight_decay": 0.0},
              {"params": [p for n, p in named if is_no_decay(n, p)], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    opt = torch.optim.AdamW(groups, lr=lr, fused=fused_ok(groups))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))))
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    x_all, y_all = images.to(device), labels.to(device)
    n, (_, c, h, w) = len(y_all), x_all.shape
    g = torch.Generator().manual_seed(seed)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" and precision == "bf16" else None
    step = 0
    while step < steps:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            x = F.pad(x_all[idx.to(device)], (4, 4, 4, 4))
            b = len(idx)
            oy, ox = torch.randint(0, 9, (b,), generator=g), torch.randint(0, 9, (b,), generator=g)
            flip = torch.rand(b, generator=g) < 0.5
            cols = torch.where(flip[:, None], torch.arange(w).flip(0), torch.arange(w)) + ox[:, None]
            rows = torch.arange(h) + oy[:, None]
            x = x[torch.arange(b, device=device)[:, None, None, None], torch.arange(c, device=device)[None, :, None, None],
                  rows.to(device)[:, None, :, None], cols.to(device)[:, None, None, :]]
            x = F.interpolate(x.float() / 255, size=(size, size), mode="bilinear", align_corners=False)
            x = (x - mean) / std
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with amp if amp is not None else torch.autocast("cpu", enabled=False):
                loss = F.cross_entropy(model(x).float(), y_all[idx.to(device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if step >= steps:
                break


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet18", help="torchvision model name, or efficientnet_lite0 (packaged)")
    ap.add_argument("--size", type=int, default=64, help="input resolution (images are 32 px, resized per batch)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps1", type=int, default=5)
    ap.add_argument("--steps2", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default on CPU: 1)")
    ap.add_argument("--clock", choices=["wall", "cpu"], help="default: cpu (process CPU time) on CPU, wall on CUDA")
    ap.add_argument("--smoke", action="store_true", help="tiny settings: checks the script runs (no meaningful figure)")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = ap.parse_args(argv)
    if args.smoke:
        args.size, args.batch_size, args.steps1, args.steps2, args.repeats = 32, 4, 1, 2, 1
    device = torch.device(args.device)
    set_threads(args.threads, device)
    clock = args.clock or ("cpu" if device.type == "cpu" else "wall")
    classes = 10
    n_train = args.batch_size * args.steps2
    images, labels = synthetic_images(n_train + 2 * 8, classes)
    data = vision_data(images, labels, args.size, n_eval=8)
    train_x, train_y = images[:n_train], labels[:n_train]
    print(env_line(device))
    print(f"model {args.model} | {args.size} px | batch {args.batch_size} | {args.precision} | "
          f"channels_last {args.channels_last} | steps {args.steps1}→{args.steps2} | repeats {args.repeats} | "
          f"clock {clock}")

    def run(side: str, steps: int) -> float:
        """One timed call of ``side`` (model construction outside the clock)."""
        torch.manual_seed(0)
        if side == "harness":
            model, got = harness_model(args.model, classes), {}
            t = timed(lambda: got.update(fit=harness_fit(model, data, steps, args.batch_size, device, args.precision,
                                                         args.channels_last)), device, clock)
            assert got["fit"].steps == steps, (got["fit"].steps, steps)
            return t
        model = plain_model(args.model, classes, like=harness_model(args.model, classes))
        return timed(lambda: plain_train(model, train_x, train_y, steps, args.batch_size, args.size, device,
                                         args.precision, args.channels_last, 1e-3), device, clock)

    for side in ("harness", "plain"):  # untimed warm-up of each: imports, lazy inits, allocator, autotuning
        run(side, args.steps1)
    times: dict[str, dict[int, list[float]]] = {"harness": {}, "plain": {}}
    for rep in range(args.repeats):
        order = ("harness", "plain") if rep % 2 == 0 else ("plain", "harness")  # who goes first alternates
        for steps in (args.steps1, args.steps2):
            for side in order:
                times[side].setdefault(steps, []).append(run(side, steps))
    out = {"model": args.model, "size": args.size, "batch_size": args.batch_size, "precision": args.precision,
           "clock": clock, "device": env_line(device)}
    for side in ("harness", "plain"):
        t1, t2 = median(times[side][args.steps1]), median(times[side][args.steps2])
        out[f"{side}_images_per_s"] = marginal(t1, t2, args.steps1, args.steps2, args.batch_size)
        out[f"{side}_whole_run_images_per_s"] = args.steps2 * args.batch_size / t2
        out[f"{side}_images_per_s_fastest"] = marginal(min(times[side][args.steps1]), min(times[side][args.steps2]),
                                                       args.steps1, args.steps2, args.batch_size)
        print(f"{side:>8}: marginal {out[f'{side}_images_per_s']:9.1f} img/s | whole {args.steps2}-step run "
              f"{out[f'{side}_whole_run_images_per_s']:9.1f} img/s | runs (s) "
              f"{[round(x, 2) for x in times[side][args.steps1]]} / {[round(x, 2) for x in times[side][args.steps2]]}")
    out["ratio"] = out["harness_images_per_s"] / out["plain_images_per_s"]
    out["ratio_whole_run"] = out["harness_whole_run_images_per_s"] / out["plain_whole_run_images_per_s"]
    out["ratio_fastest"] = out["harness_images_per_s_fastest"] / out["plain_images_per_s_fastest"]
    print(f"RATIO harness/plain images/s: {out['ratio']:.3f} marginal (target ≥ 0.97), "
          f"{out['ratio_fastest']:.3f} from the fastest runs, "
          f"{out['ratio_whole_run']:.3f} whole run (includes the harness's FLOP-counted first step and its "
          "validation/test of 16 images)")
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
