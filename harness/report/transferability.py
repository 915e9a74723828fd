"""Transferability scores beside what training then measured: for each target of a suite, each
source's scores (``harness rank``) next to the mean test metric its linear probe and its full
fine-tuning achieved, and how well each score's ranking of the sources predicted them — weighted
Kendall τ (``scipy.stats.weightedtau``, hyperbolic weights, top ranks count most: the protocol of
the LogME and SFDA evaluations) and Pearson r, with n, the number of sources.

Pure (no torch): the scores are read from ``results/<suite>/.transferability/scores.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from harness.transferability import SourceScores, by_target, target_name  # noqa: F401 - the scores file's rows

SCORES_FILE = Path(".transferability") / "scores.json"
FORMAT_VERSION = 1
# Mean weighted τ between score and fine-tuned accuracy in the published evaluations, to quote beside ours
PUBLISHED = ("Published, for scale: mean weighted τ over 11 ImageNet models × 11 datasets LEEP ≈ 0.41, "
             "LogME ≈ 0.51, SFDA ≈ 0.71 (SFDA's repository); LogME 0.50–0.79 over 10 models × 8 datasets "
             "(Transfer-Learning-Library's model-selection benchmark). Those zoos are of different "
             "architectures trained on one dataset: a zoo that varies depth, initialisation or pretraining task "
             "of a few architectures is another ranking problem, and usually an easier one.")
STRATEGIES = (("linear_probe", "probe"), ("full_finetune", "fine-tune"))


def write(results: Sequence[SourceScores], suite_directory: Path, suite: str) -> Path:
    from harness.records import atomic_write_bytes

    path = suite_directory / SCORES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"format_version": FORMAT_VERSION, "suite": suite, "results": [asdict(r) for r in results]}
    atomic_write_bytes(path, json.dumps(body, indent=1, sort_keys=True).encode())
    return path


def read(suite_directory: Path) -> list[SourceScores] | None:
    """The suite's scores, or None when there are none (or of another format)."""
    try:
        body = json.loads((suite_directory / SCORES_FILE).read_text())
        if body.get("format_version") != FORMAT_VERSION:
            return None
        return [SourceScores(**r) for r in body["results"]]
    except (OSError, ValueError, TypeError, KeyError):
        return None


def agreement(scores: Sequence[float], results: Sequence[float]) -> tuple[float | None, float | None]:
    """Weighted Kendall τ and Pearson r between a score and a result over sources; None where it is
    undefined (fewer than 3 sources, or either side constant)."""
    from scipy.stats import pearsonr, weightedtau

    if len(scores) < 3 or len(set(scores)) < 2 or len(set(results)) < 2:
        return None, None
    tau = float(weightedtau(scores, results).statistic)
    r = float(pearsonr(scores, results).statistic)
    return (tau if math.isfinite(tau) else None), (r if math.isfinite(r) else None)


def _fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:+.{digits}f}"


def render_section(rows, results: Sequence[SourceScores]) -> list[str]:
    """Markdown lines: per target, the scores beside the achieved metrics, then τ and r per score."""
    from harness.transferability import SCORES

    achieved: dict[tuple[str, str], float] = {}
    metric_name = {}
    for row in rows:
        if row.score.n:
            achieved[(row.pair, row.strategy)] = row.score.mean
            metric_name[row.pair] = row.primary
    out = ["## Transferability: scores before training vs what training measured", "",
           "Scores from `harness rank` on each target's training split (frozen features; LEEP and NCE from the "
           "source's own classifier where it kept one), beside the mean test metric over seeds of each source's "
           "linear probe and full fine-tuning. Weighted Kendall τ (top ranks weigh most) and Pearson r between a "
           "score and a result, over the target's sources; n = sources with both.", "", PUBLISHED, ""]
    for target, group in by_target(results).items():
        names = [n for n in SCORES if any(n in g.scores for g in group)]
        metric = next((metric_name[g.pair] for g in group if g.pair in metric_name), "metric")
        out += [f"### {target}", "",
                "| source (pair) | " + " | ".join(names) + f" | probe {metric} | fine-tune {metric} |",
                "|---|" + "---:|" * (len(names) + 2)]
        ordered = sorted(group, key=lambda g: -achieved.get((g.pair, "full_finetune"), -1.0))
        for g in ordered:
            cells = [f"{g.scores[n]:.4f}" if n in g.scores else "–" for n in names]
            res = [f"{100 * achieved[(g.pair, s)]:.2f}" if (g.pair, s) in achieved else "–" for s, _ in STRATEGIES]
            out.append(f"| `{g.pair}` | " + " | ".join(cells + res) + " |")
        out += ["", "| score | " + " | ".join(f"τw vs {lbl} | r vs {lbl} | n" for _, lbl in STRATEGIES) + " |",
                "|---|" + "---:|" * (3 * len(STRATEGIES))]
        for n in names:
            cells = []
            for s, _ in STRATEGIES:
                both = [(g.scores[n], achieved[(g.pair, s)]) for g in group if n in g.scores and (g.pair, s) in achieved]
                tau, r = agreement([a for a, _ in both], [b for _, b in both])
                cells += [_fmt(tau), _fmt(r), str(len(both))]
            out.append(f"| {n} | " + " | ".join(cells) + " |")
        out.append("")
    return out
