"""Per-pair PNG plots: primary metric vs cost (Pareto front marked) and validation learning curves.

matplotlib with the Agg backend (no display needed); the figure objects are built directly,
never through pyplot's global state, one per plot kind and thread, reused from plot to plot.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote

from harness.digest import digest_bytes
from harness.report.aggregate import PARETO_COST, Row

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# PNG metadata without the matplotlib version: the same rows give the same bytes.
_METADATA = {"Software": None}
# zlib level 1: PNG encoding 10 instead of 14 ms (PIL's default level 6), files ~7% larger
_PNG = {"compress_level": 1}
# a title at a set height skips matplotlib's placement pass, which measures the axes' tick
# labels once more on every draw (a quarter of a plot's time)
TITLE_Y = 1.01
# glyphs rasterised without FreeType's hinting: a fifth of a plot's time less (48 vs 59 ms per
# plot), and at 100 dpi the text looks the same to the eye
HINTING = "no_hinting"
Plot = Callable[[list[Row], Path, "Styles"], "Path | None"]
# One colour and one marker per strategy, the same in every plot of a report: 20 colours (tab20's
# dark shades, then its light ones) and 10 markers; the k-th label gets colour k mod 20 and marker
# k mod 10, so no two of the first 20 labels share a colour and no two share both before 20·10.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
          "#dbdb8d", "#9edae5")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<")
Styles = dict  # label → (colour, marker)


def styles_for(labels) -> Styles:
    """Each label's (colour, marker), by its place among the sorted labels of the whole report."""
    return {label: (COLORS[k % len(COLORS)], MARKERS[k % len(MARKERS)]) for k, label in enumerate(sorted(set(labels)))}


def _style():
    """The rcParams every plot is drawn (and its text measured) with, for the ``with`` block only."""
    import matplotlib

    return matplotlib.rc_context({"text.hinting": HINTING})


def _style_this_process() -> None:
    """The same settings for good, in a worker process that only draws plots: entering and leaving
    an rc_context per plot costs ~3 ms of a ~47 ms plot (matplotlib's font caches key on rcParams)."""
    import signal

    import matplotlib

    matplotlib.rcParams["text.hinting"] = HINTING
    # a forked worker inherits the CLI's SIGTERM-as-Ctrl-C handler: a plot worker just stops
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _styled(plot: Plot) -> Plot:
    @functools.wraps(plot)
    def styled(rows: list[Row], path: Path, styles: Styles | None = None) -> Path | None:
        with _style():
            return plot(rows, path, styles or styles_for(r.label for r in rows))

    return styled


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=_SIZE, dpi=100)
    FigureCanvasAgg(fig)
    # fixed margins: tight_layout would draw the figure an extra time (half the cost of a plot)
    fig.subplots_adjust(**_MARGINS)
    return fig


_SIZE = (5.5, 3.8)
_MARGINS = {"left": 0.12, "right": 0.96, "bottom": 0.13, "top": 0.91}
_canvases = threading.local()


def _canvas_of(kind: str):
    """This thread's figure and axes for ``kind`` as the last plot left them (None before any)."""
    return getattr(_canvases, kind, None)


def _canvas(kind: str):
    """A figure and axes for a plot of ``kind``, made once per thread and wiped between plots:
    a fresh axes builds its tick artists again on its first draw, which with the figure itself is
    a fifth of a plot's time. Whatever one plot sets that the next might not (scales, limits,
    size, legend), the wipe resets, so a plot's bytes do not depend on the plots drawn before it."""
    made = _canvas_of(kind)
    if made is None:
        fig = _figure()
        made = (fig, fig.add_subplot())
        setattr(_canvases, kind, made)
    fig, ax = made
    for artist in [*ax.lines, *ax.collections, *ax.texts, *ax.patches]:
        artist.remove()
    ax.containers.clear()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    ax.set_xscale("linear")
    ax.set_yscale("linear")
    ax.relim()
    ax.autoscale(True)
    fig.set_size_inches(*_SIZE)
    fig.subplots_adjust(**_MARGINS)
    return fig, ax


def file_stem(pair: str) -> str:
    return _UNSAFE.sub("_", pair)


def _pareto_points(rows: list[Row]) -> list[Row]:
    """The rows a Pareto plot shows: those with both a score and a cost."""
    return [r for r in rows if r.score.n and PARETO_COST in r.cost]


def _curved(rows: list[Row]) -> list[Row]:
    """The rows a learning-curve plot shows."""
    return [r for r in rows if r.curve]


# strategies that fit in closed form (no optimizer steps, hence no epochs): how, in a few words
CLOSED_FORM = {"linear_probe": "L-BFGS logistic regression on frozen features",
               "subspace_alignment": "PCA alignment of frozen features, then the probe's L-BFGS fit"}


def no_curve(rows: list[Row]) -> list[tuple[str, str]]:
    """``(label, why)`` of each cell with ok seeds that a learning-curve plot cannot show: a fit in
    closed form has no epochs (no optimizer step: the budget records 0 steps); another cell of a
    pair whose plot shows some curves recorded no validation metric per epoch."""
    plotted = any(r.curve for r in rows)
    out = []
    for r in rows:
        if r.curve or not r.n_ok:
            continue
        if r.budget and not r.budget.get("steps"):
            how = CLOSED_FORM.get(r.strategy, "fitted outside the training loop")
            out.append((r.label, f"closed-form fit ({how}): no epochs"))
        elif plotted:
            out.append((r.label, "no validation metric recorded per epoch"))
    return out


def no_curve_note(rows: list[Row]) -> str | None:
    """One sentence for the report beside the learning-curve plot: the cells it has no curve for, and why."""
    missing = no_curve(rows)
    if not missing:
        return None
    return "No learning curve for " + "; ".join(f"`{label}` ({why})" for label, why in missing) + "."


def _pareto(rows: list[Row], path: Path, styles: Styles) -> Path | None:
    """Primary metric (%, mean with its 95% CI, clipped to 0–100) against mean ``wall_s`` per run,
    each strategy in its colour and marker, filled when Pareto-optimal, hollow otherwise; the front
    joined by a line. The names are in a key beside the axes, so no label covers a point or another
    label however close the points are. None when no row has both coordinates."""
    points = _pareto_points(rows)
    if not points:
        return None
    fig, ax = _canvas("pareto")
    for r in points:
        color, marker = styles[r.label]
        x, y = r.cost[PARETO_COST].mean, 100 * r.score.mean
        half = 0.0 if math.isnan(r.score.ci95) else 100 * r.score.ci95
        yerr = [[y - max(0.0, y - half)], [min(100.0, y + half) - y]]
        ax.errorbar([x], [y], yerr=yerr, fmt=marker, color=color, mfc=color if r.pareto else "white",
                    mec=color, markersize=6, capsize=3, zorder=3)
    ax.margins(x=0.08, y=0.08)
    front = sorted((r for r in points if r.pareto), key=lambda r: r.cost[PARETO_COST].mean)
    if len(front) > 1:
        ax.step([r.cost[PARETO_COST].mean for r in front], [100 * r.score.mean for r in front], where="post",
                color="#555555", alpha=0.5, zorder=2)
    xs = [r.cost[PARETO_COST].mean for r in points]
    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(f"{PARETO_COST} per run (mean over seeds)")
    ax.set_ylabel(f"{points[0].primary} (%)")
    ax.set_title(f"{points[0].group}: {points[0].primary} vs cost (filled = Pareto-optimal)", fontsize=9, y=TITLE_Y)
    ax.grid(alpha=0.3)
    entries = [(r.label + (" ◆" if r.pareto else ""), *styles[r.label], r.pareto)
               for r in sorted(points, key=lambda r: -r.score.mean)]
    _widen(fig, _side_key(fig, ax, entries, line=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata=_METADATA, pil_kwargs=_PNG)
    return path


def _widen(fig, key_in: float) -> None:
    """Grow the figure by ``key_in`` inches on the right; the axes keep their size in inches."""
    old, sp = fig.get_figwidth(), fig.subplotpars
    left_in, axes_in = sp.left * old, (sp.right - sp.left) * old
    width = left_in + axes_in + key_in
    fig.set_size_inches(width, fig.get_figheight())
    fig.subplots_adjust(left=left_in / width, right=(left_in + axes_in) / width)


def _curve(rows: list[Row], path: Path, styles: Styles) -> Path | None:
    """Validation primary metric per epoch (mean over seeds, band = 95% CI clipped to 0–100) of
    every strategy, in its colour and marker. None when no row has a curve."""
    curved = _curved(rows)
    if not curved:
        return None
    from matplotlib.collections import PolyCollection
    from matplotlib.ticker import MaxNLocator

    fig, ax = _canvas("curve")
    bands, colors = [], []
    for r in curved:
        color, marker = styles[r.label]
        epochs = sorted(r.curve)
        ys = [100 * r.curve[e].mean for e in epochs]
        ax.plot(epochs, ys, marker=marker, markersize=4, label=r.label, color=color)
        lo = [max(0.0, 100 * (r.curve[e].low if not math.isnan(r.curve[e].ci95) else r.curve[e].mean)) for e in epochs]
        hi = [min(100.0, 100 * (r.curve[e].high if not math.isnan(r.curve[e].ci95) else r.curve[e].mean))
              for e in epochs]
        bands.append(list(zip(epochs, lo, strict=True)) + list(zip(epochs[::-1], hi[::-1], strict=True)))
        colors.append(color)
    # every band in one collection: a fill_between per strategy re-scales the axes each time
    ax.add_collection(PolyCollection(bands, facecolors=colors, edgecolors="none", alpha=0.15))
    ax.autoscale_view()
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"validation {curved[0].primary} (%)")
    ax.set_title(f"{curved[0].group}: learning curves (mean, 95% CI band)", fontsize=9, y=TITLE_Y)
    ax.grid(alpha=0.3)
    # the key right of the axes, over no curve, the figure widened by its measured width; below it
    # the cells without a curve, each with why (a closed-form fit has no epochs)
    missing = [f"{label}: {'closed form, no epochs' if why.startswith('closed-form') else 'no curve recorded'}"
               for label, why in no_curve(rows)]
    _widen(fig, _side_key(fig, ax, [(r.label, *styles[r.label], True) for r in curved],
                          notes=["no curve:", *missing] if missing else ()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata=_METADATA, pil_kwargs=_PNG)
    return path


pareto_plot = _styled(_pareto)
curve_plot = _styled(_curve)
# every plot kind: (the rows it shows, which decide whether it is drawn; the function drawing it,
# to be called under _style)
KINDS: dict[str, tuple[Callable[[list[Row]], list[Row]], Plot]] = {
    "pareto": (_pareto_points, _pareto),
    "curve": (_curved, _curve),
}

KEY_PT = 7  # font size of the curve plot's key


def _measurer(dpi: float):
    """This thread's renderer for measuring text at ``dpi``. Not the figure's own: asking the
    canvas for its renderer before the figure is widened made a second renderer per curve plot,
    and matplotlib's text-size cache lives and dies with the renderer."""
    from matplotlib.backends.backend_agg import RendererAgg

    made = getattr(_canvases, "measurer", None)
    if made is None or made.dpi != dpi:
        made = _canvases.measurer = RendererAgg(1, 1, dpi)
    return made


def _side_key(fig, ax, entries: list[tuple[str, str, str, bool]], line: bool = True,
              notes: Sequence[str] = ()) -> float:
    """A legend right of ``ax``, top-aligned with it: per entry (label, colour, marker, filled) a
    short line with the marker (or the marker alone), and the label, one row per entry. Drawn as
    plain lines and texts rather than ``ax.legend``, whose box layout measures every label several
    times on each draw (half of a curve plot's time). ``notes``: grey lines under the entries, set
    off by a blank row. Returns the width (inches) the figure must grow by to show it."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.lines import Line2D

    sp = fig.subplotpars
    axes_w, axes_h = (sp.right - sp.left) * fig.get_figwidth(), (sp.top - sp.bottom) * fig.get_figheight()
    em = KEY_PT / 72  # inches
    x0, handle, gap, pitch = 0.02 * axes_w, 2.0 * em, 0.8 * em, 1.5 * em
    renderer, prop = _measurer(fig.dpi), FontProperties(size=KEY_PT)
    text_w = max(renderer.get_text_width_height_descent(e[0], prop, ismath=False)[0] for e in entries) / fig.dpi
    for k, (label, color, marker, filled) in enumerate(entries):
        y = 1 - (0.5 + k) * pitch / axes_h
        xs = [1 + (x0 + f * handle) / axes_w for f in (0.0, 0.5, 1.0)]
        ax.add_line(Line2D(xs, [y] * 3, color=color, marker=marker, markersize=4, markevery=[1],
                           linestyle="-" if line else "none", mfc=color if filled else "white", mec=color,
                           transform=ax.transAxes, clip_on=False))
        ax.text(1 + (x0 + handle + gap) / axes_w, y, label, fontsize=KEY_PT, va="center", ha="left",
                transform=ax.transAxes, clip_on=False, parse_math=False)
    for k, note in enumerate(notes, len(entries) + 1):  # flush left under the handles: no marker to leave room for
        ax.text(1 + x0 / axes_w, 1 - (0.5 + k) * pitch / axes_h, note, fontsize=KEY_PT, va="center", ha="left",
                color="#666666", transform=ax.transAxes, clip_on=False, parse_math=False)
        note_w = renderer.get_text_width_height_descent(note, prop, ismath=False)[0] / fig.dpi
        text_w = max(text_w, note_w - handle - gap)
    return x0 + handle + gap + text_w + em


PLOT_VERSION = 7  # bump when a plot's look changes: cached PNGs are redrawn
INDEX = ".plots.json"


def digest(kind: str, rows: list[Row], styles: Styles) -> str:
    """What a plot shows, hashed: the same digest means the same picture."""
    data = [(r.label, styles.get(r.label), r.primary, r.pareto, r.score, r.cost.get(PARETO_COST),
             sorted(r.curve.items())) for r in sorted(rows, key=lambda r: r.label)]
    # the note under the curve plot's key; only plots that have one hash it, so every other plot keeps
    # its digest and is not redrawn (hence no PLOT_VERSION bump)
    if kind == "curve" and no_curve(rows):
        data.append(("no curve", no_curve(rows)))
    # the repr, not JSON: the plot index written by earlier reports holds keys made this way
    return digest_bytes(repr((PLOT_VERSION, kind, rows[0].group if rows else "", data)), 20)


def _draw(job: tuple[str, list[Row], Path, Styles]) -> Path | None:
    kind, rows, path, styles = job
    return KINDS[kind][1](rows, path, styles)


def _safe_to_fork() -> bool:
    """Linux (fork is unsafe on macOS) and no other Python thread, whose locks (logging, I/O)
    would stay held in the child. Native pools do not matter here: OpenBLAS re-creates its threads
    after a fork, and the children only draw with matplotlib and PIL (no OpenMP)."""
    import sys
    import threading

    return sys.platform.startswith("linux") and threading.active_count() == 1


def _draw_all(jobs: list[tuple[str, list[Row], Path, Styles]], workers: int | None,
              meanwhile: Callable[[], None]) -> list[Path | None]:
    """Draw the plots, in forked worker processes when there are several and more than one CPU
    (a matplotlib PNG costs ~50 ms of pure-Python CPU, so threads would not help); ``meanwhile``
    runs in this process while the workers draw."""
    import multiprocessing

    if workers is None:  # a fork costs more than it saves below a few plots
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = cpus if len(jobs) >= 4 else 1
    workers = min(workers, len(jobs), 16)
    if workers < 2 or not _safe_to_fork():
        with _style():
            drawn = [_draw(job) for job in jobs]
        meanwhile()
        return drawn
    from concurrent.futures import ProcessPoolExecutor

    # fork, not spawn, and matplotlib loaded first: the children inherit it, fonts included,
    # instead of each importing it again (~0.5 s)
    import matplotlib.figure  # noqa: F401
    from matplotlib import font_manager
    from matplotlib.backends import backend_agg  # noqa: F401

    font_manager.fontManager.get_default_size()
    with warnings.catch_warnings():  # Python >= 3.12 warns on any fork once numpy's BLAS threads exist
        warnings.filterwarnings("ignore", message=r".*multi-threaded, use of fork\(\) may lead to deadlocks",
                                category=DeprecationWarning)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                 initializer=_style_this_process) as pool:
            # one plot per task: a plot's rows pickle in well under a millisecond, and chunks of
            # several left one worker drawing a whole chunk alone at the end
            pending = pool.map(_draw, jobs)
            meanwhile()
            return list(pending)


def plot_pairs(rows: list[Row], directory: Path, link_prefix: str, workers: int | None = None,
               meanwhile: Callable[[dict[str, dict[str, str]]], None] | None = None) -> dict[str, dict[str, str]]:
    """Both plots for every pair of ``rows`` into ``directory``; returns the relative links
    (``link_prefix/<file>``) per pair for :func:`harness.report.markdown.render`.

    A plot whose data has not changed since it was drawn (same digest in ``directory/.plots.json``
    and the file still there) is not drawn again: a report over many pairs redraws only the
    pairs that gained records. The others are drawn on ``workers`` processes (default: one per
    usable CPU), and ``meanwhile(links)`` runs here while they draw (the links are known before
    the plots are: a plot is drawn exactly when it has rows to show).
    """
    by_pair: dict[str, list[Row]] = {}
    for r in rows:
        by_pair.setdefault(r.group, []).append(r)
    styles = styles_for(r.label for r in rows)
    index_path = directory / INDEX
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        index = {}
    prefix = quote(link_prefix)
    made: dict[str, dict[str, str]] = {}
    jobs: list[tuple[str, list[Row], Path, Styles]] = []
    keys: list[str] = []
    for pair, pair_rows in by_pair.items():
        made[pair] = {}
        for kind, (shown, _) in KINDS.items():
            if not shown(pair_rows):
                continue
            name = f"{file_stem(pair)}-{kind}.png"
            made[pair][kind] = f"{prefix}/{name}"
            key = digest(kind, pair_rows, styles)
            if index.get(name) != key or not (directory / name).exists():
                jobs.append((kind, pair_rows, directory / name, styles))
                keys.append(key)
    # links in the pairs' order, each pair's plots in the order pareto, curve
    links = {pair: kinds for pair, kinds in made.items() if kinds}
    drawn = _draw_all(jobs, workers, lambda: meanwhile(links) if meanwhile else None)
    for (_, _, path, _), key, done in zip(jobs, keys, drawn, strict=True):
        if done is None:  # a kind's predicate and its plot function disagree: a bug
            raise RuntimeError(f"{path.name} was planned but not drawn")
        index[path.name] = key
    if index:
        directory.mkdir(parents=True, exist_ok=True)
        index_path.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    return links
