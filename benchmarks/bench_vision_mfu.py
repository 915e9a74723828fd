"""Benchmark (c): ResNet-50 fine-tune throughput (images/s) and model FLOPs utilisation (MFU)
through the harness loop, on the path the vision suite takes: CIFAR-shaped uint8 images
resident on the GPU, crop/flip/resize to 224 px per batch there, bf16 autocast, channels_last,
optionally ``torch.compile``.

FLOPs per image are the harness's own count (PyTorch's FLOP counter over one forward+backward
step, the ``flops_per_step`` every record carries), cross-checked against the analytic
3 × 2 × MACs (torchvision's weights metadata lists ResNet-50 at 4.09 G multiply-accumulates
at 224 px; ×2 for FLOPs, ×3 for forward + backward ≈ 24.5 GFLOPs per image). MFU = images/s ×
FLOPs per image / the device's dense bf16 peak (table in ``bench_vision_common``; ``--peak-tflops``
for others). On a CPU the script runs too (small settings; MFU n/a).

One side only (no baseline). What is timed: the harness meter's train phase of each run (wall
clock; model construction, data placement, optimizer construction and the validation/test
outside it). Warm: one untimed run of ``--steps1`` steps first pays the process's lazy CUDA/cuDNN
start-up, cuDNN autotuning and, with ``--compile``, the cold compile (later runs compile from warm
caches, and what they still pay cancels below). Then ``--repeats`` (default 3) timed repeats, each
a run of ``--steps1`` and one of ``--steps2`` steps; a repeat's throughput is marginal between its
two runs (the first step's FLOP count, autotuning and compilation cancel); printed: the median over
repeats and the spread (min–max), for images/s and MFU.

    python benchmarks/bench_vision_mfu.py                                # CUDA if present, else a CPU check
    python benchmarks/bench_vision_mfu.py --compile                      # + torch.compile
    python benchmarks/bench_vision_mfu.py --batch-size 256 --steps2 200  # bigger batch
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vision_common import (  # noqa: E402
    env_line,
    harness_fit,
    marginal,
    median,
    peak_flops,
    set_threads,
    synthetic_images,
    vision_data,
)


def analytic_flops_per_image(model: str, size: int) -> float | None:
    """3 × 2 × MACs from torchvision's weights metadata (``_ops``, G multiply-accumulates at the
    weights' resolution), scaled by resolution²."""
    from torchvision.models import get_model_weights

    try:
        w = get_model_weights(model).DEFAULT
    except (ValueError, KeyError):
        return None
    gmacs, crop = w.meta.get("_ops"), w.transforms().crop_size[0]
    return None if gmacs is None else 3 * 2 * gmacs * 1e9 * (size / crop) ** 2


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cuda = torch.cuda.is_available()
    ap.add_argument("--model", default="resnet50", help="torchvision model name")
    ap.add_argument("--size", type=int, default=224 if cuda else 64)
    ap.add_argument("--batch-size", type=int, default=128 if cuda else 8)
    ap.add_argument("--steps1", type=int, default=20 if cuda else 2)
    ap.add_argument("--steps2", type=int, default=120 if cuda else 6)
    ap.add_argument("--repeats", "--repeat", type=int, default=3,
                    help="timed repeats (each a --steps1 and a --steps2 run) after one untimed warm-up run")
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    ap.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    ap.add_argument("--peak-tflops", type=float, help="dense peak of this device (default: from the table)")
    ap.add_argument("--device", default="cuda" if cuda else "cpu")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default on CPU: 1)")
    ap.add_argument("--smoke", action="store_true", help="tiny settings: checks the script runs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.size, args.batch_size, args.steps1, args.steps2, args.repeats = 32, 2, 1, 2, 1
    device = torch.device(args.device)
    set_threads(args.threads, device)
    from harness.registry import SOURCES
    from harness.run.loop import effective_precision
    from harness.sources.nets import TransferModel

    n_train = args.batch_size * args.steps2
    images, labels = synthetic_images(n_train + 2 * args.batch_size)
    data = vision_data(images, labels, args.size, n_eval=args.batch_size)
    precision = effective_precision(device, args.precision)
    print(env_line(device))
    print(f"{args.model} fine-tune | {args.size} px | batch {args.batch_size} | {precision} | channels_last "
          f"{args.channels_last} | compile {args.compile} | steps {args.steps1}→{args.steps2}")

    def one_run(steps: int):
        torch.manual_seed(0)
        backbone = SOURCES.get("torchvision").build(args.model, {"weights": None, "image_size": args.size},
                                                    pretrained=False)
        model = TransferModel(backbone, 10)
        t = harness_fit(model, data, steps, args.batch_size, device, args.precision, args.channels_last, args.compile,
                        lr=1e-4)
        del model, backbone
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return t

    one_run(args.steps1)  # untimed warm-up: lazy CUDA/cuDNN start-up, autotuning, a cold compile
    times: dict[int, list[float]] = {args.steps1: [], args.steps2: []}
    flops_per_step = None
    for _ in range(args.repeats):
        for steps in (args.steps1, args.steps2):
            t = one_run(steps)
            times[steps].append(t.train_s)
            flops_per_step = flops_per_step or t.flops_per_step
    per_repeat = [marginal(t1, t2, args.steps1, args.steps2, args.batch_size)
                  for t1, t2 in zip(times[args.steps1], times[args.steps2], strict=True)]
    ips, ips_lo, ips_hi = median(per_repeat), min(per_repeat), max(per_repeat)
    counted = flops_per_step / args.batch_size if flops_per_step else None
    analytic = analytic_flops_per_image(args.model, args.size)
    peak, name = peak_flops(device, args.peak_tflops)
    per_image = counted or analytic
    mfu, mfu_lo, mfu_hi = (tuple(x * per_image / peak for x in (ips, ips_lo, ips_hi)) if peak and per_image
                           else (None, None, None))
    out = {"model": args.model, "size": args.size, "batch_size": args.batch_size, "precision": precision,
           "channels_last": args.channels_last, "compile": args.compile, "device": name, "images_per_s": ips,
           "images_per_s_min": ips_lo, "images_per_s_max": ips_hi, "repeats": args.repeats,
           "flops_per_image_counted": counted, "flops_per_image_analytic": analytic,
           "peak_flops": peak, "mfu": mfu, "mfu_min": mfu_lo, "mfu_max": mfu_hi,
           "runs_s": {k: [round(x, 3) for x in v] for k, v in times.items()}}

    def fmt(flops: float | None) -> str:
        return f"{flops / 1e9:.2f} GFLOPs" if flops else "n/a"

    print(f"FLOPs per image (fwd+bwd): counted {fmt(counted)} | analytic 3×2×MACs {fmt(analytic)}")
    print(f"THROUGHPUT: {ips:.1f} images/s (marginal, median of {args.repeats} repeat(s), spread "
          f"{ips_lo:.1f}–{ips_hi:.1f}; runs {out['runs_s']} s)")
    if mfu is None:
        why = "not a CUDA device" if device.type != "cuda" else f"no peak for '{name}' in the table; pass --peak-tflops"
        print(f"MFU: n/a ({why})")
    else:
        print(f"MFU: {100 * mfu:.1f}% of {peak / 1e12:.0f} TFLOP/s dense {precision} ({name}), "
              f"spread {100 * mfu_lo:.1f}–{100 * mfu_hi:.1f}%")
    if args.json:
        print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
