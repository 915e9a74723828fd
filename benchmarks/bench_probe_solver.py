"""How much of a deterministic probe cell is the solver's: the L-BFGS probe's head on the shifted
digits pair of ``suites/strategies.yaml`` (EfficientNet-Lite0 features of digits at 48 px, scored on
the shifted domain), fitted at the same C to the same tolerance from two starting points — warm-
started along the Kornblith grid as the probe does (``harness.run.logistic.select_c``), and from
zeros — reaches two objectives a hair apart that score differently on the test set.

The report's interval of a probe cell (the bootstrap over test examples) should hold both; the
seed-only t interval gave it no width. Prints, per C: both objectives and their relative
difference, both test accuracies and their difference in test images.

    python benchmarks/bench_probe_solver.py [--c 1 0.177828]
"""

from __future__ import annotations

import argparse

import torch

from harness.registry import SOURCES
from harness.run.features import extract
from harness.run.logistic import fit_logistic, fit_path, objective, solver_threads
from harness.strategies.linear_probe import ProbeParams
from harness.targets.load import load_target

TARGET = {"dataset": "sklearn/digits", "task": "image-classification", "image_size": 48,
          "eval_domain": "shifted", "unlabeled": "shifted"}


def accuracy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> tuple[float, int]:
    right = int(((x.double() @ w.T + b).argmax(1) == y).sum())
    return right / len(y), right


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--c", type=float, nargs="+", default=[1.0, 0.177828],
                    help="the C values to fit at (default: 1, and 0.177828, the C the committed run chose)")
    args = ap.parse_args()
    torch.manual_seed(0)
    backbone = SOURCES.get("packaged").build("efficientnet_lite0", {}, pretrained=True)
    data = load_target(TARGET, backbone, "image-classification")
    device = torch.device("cpu")
    feats = {k: extract(backbone, data.splits[k], device, 256).tensors for k in ("train", "test")}
    x, y = feats["train"]["features"], feats["train"]["labels"]
    xt, yt = feats["test"]["features"], feats["test"]["labels"]
    params = ProbeParams()
    grid = sorted(params.c_grid)
    print(f"train {tuple(x.shape)}, test {len(yt)} shifted images; max_iter {params.max_iter}")
    print("| C | objective, warm-started | objective, from zeros | relative difference | test accuracy warm | "
          "from zeros | difference (images) |")
    print("|---|---|---|---|---|---|---|")
    with solver_threads(device, x.numel()):
        for c in args.c:
            init, last = None, None
            # the probe's path (select_c's): every C of the grid up to this one, each from the last
            for g, fit in fit_path(x, y, 10, [g for g in grid if g <= c * (1 + 1e-9)], params.max_iter):
                init, last = fit, g
            if last is None or abs(last - c) > 1e-6 * c:  # C off the grid: one more fit, from the path's last
                init = fit_logistic(x, y, 10, c, params.max_iter, init)
            warm = init
            cold = fit_logistic(x, y, 10, c, params.max_iter, None)
            ow, oc = (float(objective(x.double(), y, *fit, c)) for fit in (warm, cold))
            (aw, rw), (ac, rc) = accuracy(xt, yt, *warm), accuracy(xt, yt, *cold)
            print(f"| {c:g} | {ow:.6f} | {oc:.6f} | {abs(ow - oc) / min(ow, oc):.1e} | {100 * aw:.2f} | "
                  f"{100 * ac:.2f} | {rw - rc:+d} |")


if __name__ == "__main__":
    main()
