"""SuiteSpec → the plan: a graph of RunSpecs, each with a stable run_id. Pure.

A *cell* is one (pair, strategy label). Without a search it makes one **final** run per suite
seed. With a ``search:`` it makes **trials** — every point of the grid (or every sampled point)
on each selection seed, scored on the validation split — and one final per seed that depends on
all of them: the driver picks the best point from the trials' records and only then runs it. A
strategy that reads another run's output (``distill``'s teacher) depends on that run at the same
seed; a teacher that is not a cell of the suite (a source-spec teacher) is an **aux** cell. A
source with a ``pretrain:`` block is trained on that task first by one **aux** run (at the block's
seed, over the suite's defaults and the block's ``train``), which every run starting from the
source's weights reads (input ``pretrain``) and hashes into its run_id. With ``budget_check: true``
each cell that trains by epochs gets one more aux run, its first seed at twice the epochs (the
report's adequacy test). Only finals enter the leaderboard.

Identity: a run_id hashes what the run computes (model, data, strategy, training settings, seed,
the runs it reads), never where it runs: the placement keys (device, DataLoader workers, the
timeout, what to do on OOM) and the executor are left out. A final of a search hashes its search space in place of
the searched values: its identity is "the best of this grid at this seed", known before the
trials are run. ``compute_key`` hashes the concrete computation, so a final whose chosen point
at a selection seed *is* a trial reuses that trial's record instead of training again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from harness import __version__
from harness.config.schema import (
    PLACEMENT_KEYS,
    TRAIN_KEYS,
    PairSpec,
    StrategySpec,
    SuiteSpec,
    TrainConfig,
    layered_settings,
)
from harness.digest import digest
from harness.search import Search, merge_search

SMOKE_STEPS = 3
SMOKE_EVAL_SAMPLES = 64
SMOKE_CAPS = frozenset({"epochs", "max_steps", "max_train_samples", "max_eval_samples", "patience"})
SEARCHED = "<searched>"  # a searched value in a final's plan-time config
BUDGET_KEYS = ("epochs", "max_steps", "max_train_samples", "batch_size", "grad_accum")
ROLES = ("final", "trial", "aux")
PRETRAIN_INPUT = "pretrain"  # the input by which a run reads its pretrain: source's weights
PRETRAIN_EXPORT = "weights"  # what a pretrain run exports (harness.run.outputs)
BUDGET_CHECK_FACTOR = 2  # a budget check trains at this many times the cell's epochs
BUDGET_SEARCHED = frozenset({"epochs", "max_steps"})  # a cell searching these has no one budget to double



@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs, resolved (defaults < pair.train < strategy < override), and
    where it sits in the plan graph."""

    run_id: str
    suite: str
    pair: str
    strategy: str
    label: str
    seed: int
    source: dict[str, Any]
    target: dict[str, Any]
    train: dict[str, Any]
    params: dict[str, Any]
    smoke: bool = False
    price_per_gpu_hour: float | None = None
    role: str = "final"  # final (in the leaderboard) | trial (of a search) | aux (a teacher no cell names)
    depends_on: tuple[str, ...] = ()  # run_ids that must have finished first
    search: Search | None = None  # a final chosen from trials, or a trial of that search
    point: dict[str, Any] | None = None  # a trial's values; a resolved final's chosen values
    trial_index: int | None = None
    inputs: Mapping[str, str] = field(default_factory=dict)  # name → run_id whose output the strategy reads
    exports: tuple[str, ...] = ()  # outputs other runs read (not hashed: they don't change this run)
    reference: Mapping[str, Any] = field(default_factory=dict)  # the pair's budget (defaults < pair.train)
    # the suite's `--set` texts: recorded, not hashed — their values are in train/params/source/target
    # (hashed there), and a value set on the command line computes what the same value in the file does
    overrides: tuple[str, ...] = ()
    # a budget check's factor (an aux run of a final cell at `factor` × its epochs, report's adequacy
    # test); None for every other run. Not hashed: the doubled budget it computes is
    budget_check: int | None = None

    @property
    def resolved(self) -> bool:
        """Whether every value is known (a final of a search is not, until its trials ran)."""
        return SEARCHED not in self.train.values() and SEARCHED not in self.params.values()

    def base_config(self) -> dict[str, Any]:
        """What the run computes (the trial and final of the same point and seed share it)."""
        cfg = resolved_config(self.pair, self.source, self.target, self.strategy, self.params, self.train,
                              self.seed, self.smoke)
        if self.inputs:
            cfg["inputs"] = dict(self.inputs)
        return cfg

    def config(self) -> dict[str, Any]:
        """What the record stores: the computation, and for a search's runs the search (space,
        and the point tried or chosen)."""
        cfg = self.base_config()
        cfg["placement"] = {k: self.train[k] for k in PLACEMENT_KEYS if k in self.train}
        if self.overrides:
            cfg["overrides"] = list(self.overrides)
        if self.search is not None:
            cfg["search"] = {**self.search.describe(), "role": self.role, "point": self.point,
                             "trial_index": self.trial_index}
        return cfg

    @property
    def compute_key(self) -> str:
        if not self.resolved:
            raise ValueError(f"{self.run_id}: the search is not resolved yet")
        return config_hash(self.base_config())

    @property
    def train_config(self) -> TrainConfig:
        if not self.resolved:
            raise ValueError(f"{self.run_id}: the search is not resolved yet")
        return TrainConfig.model_validate(self.train)

    def with_point(self, point: Mapping[str, Any]) -> RunSpec:
        """This run with ``point``'s values in place (train keys and strategy params); its
        identity (run_id, role, graph edges) unchanged."""
        train = {**self.train, **{k: v for k, v in point.items() if k in TRAIN_KEYS}}
        params = {**self.params, **{k: v for k, v in point.items() if k not in TRAIN_KEYS}}
        return replace(self, train=train, params=params, point=dict(point))


def resolved_config(pair, source, target, strategy, params, train, seed, smoke) -> dict[str, Any]:
    return {
        "harness_version": __version__,
        "pair": pair,
        "source": source,
        "target": target,
        "strategy": {"name": strategy, "params": params},
        "train": {k: v for k, v in train.items() if k not in PLACEMENT_KEYS},
        "seed": seed,
        "smoke": smoke,
    }


def config_hash(config: dict[str, Any]) -> str:
    return digest(config, 10, compact=True)


def make_run_id(pair: str, label: str, seed: int, config: dict[str, Any], trial: int | None = None) -> str:
    """Readable and stable: ``<pair>.<label>[.t<k>].s<seed>-<hash of the resolved config>``."""
    return f"{pair}.{label}{'' if trial is None else f'.t{trial}'}.s{seed}-{config_hash(config)}"


# --------------------------------------------------------------------------- resolving a cell


@dataclass(frozen=True)
class Cell:
    """One (pair, label) resolved: its settings, its search (if any) and the runs it reads."""

    pair: PairSpec
    label: str
    strategy: str
    source: dict[str, Any]
    target: dict[str, Any]
    train: dict[str, Any]
    params: dict[str, Any]
    search: Search | None
    inputs: Mapping[str, Any]  # name → harness.strategies.base.Input
    role: str = "final"
    reference: Mapping[str, Any] = field(default_factory=dict)



def smoke_train(train: TrainConfig) -> TrainConfig:
    bs = train.batch_size * train.grad_accum
    return train.model_copy(update={
        "epochs": 1,
        "max_steps": min(train.max_steps or SMOKE_STEPS, SMOKE_STEPS),
        "max_train_samples": min(train.max_train_samples or 10**12, SMOKE_STEPS * bs),
        "max_eval_samples": min(train.max_eval_samples or 10**12, SMOKE_EVAL_SAMPLES),
        "patience": None,
    })


def resolve_cell(suite: SuiteSpec, pair: PairSpec, strat: StrategySpec, smoke: bool = False,
                 source: dict[str, Any] | None = None, role: str = "final") -> Cell:
    """Merge the four layers (:func:`~harness.config.schema.layered_settings`, and the searches
    the same way) into a cell's settings and search."""
    from harness.registry import STRATEGIES

    cls = STRATEGIES.get(strat.name)
    override = pair.overrides.get(strat.label)
    o_train, o_params = (override.train, override.params) if override else ({}, {})
    train_layers, param_layers = layered_settings(suite.defaults, pair, strat, override)
    train = TrainConfig.model_validate(train_layers)
    if smoke:
        train = smoke_train(train)
    params = cls.Params.model_validate(param_layers)
    allowed = (set(TRAIN_KEYS) - cls.unused_keys(params)) | set(cls.Params.model_fields)
    if smoke:  # a smoke run's caps are not for a search to undo
        allowed -= SMOKE_CAPS
    search = merge_search([(suite.defaults, suite.search), (pair.train, pair.search),
                           ({**strat.train, **strat.params}, strat.search),
                           ({**o_train, **o_params}, override.search if override else None)], suite.seeds, allowed)
    train_d, params_d = train.model_dump(mode="json"), params.model_dump(mode="json")
    if search is not None:
        for k in search.space:
            (train_d if k in TRAIN_KEYS else params_d)[k] = SEARCHED
    reference = TrainConfig.model_validate(layered_settings(suite.defaults, pair)[0])
    if smoke:
        reference = smoke_train(reference)
    source = source or pair.source.as_dict("model")
    if not cls.pretrained:  # from random weights: what the source was pretrained on changes nothing it computes
        source = {k: v for k, v in source.items() if k != "pretrain"}
    return Cell(pair=pair, label=strat.label, strategy=strat.name, source=source,
                target=pair.target.as_dict("dataset"), train=train_d, params=params_d, search=search,
                inputs=cls.inputs(params, pair, suite), role=role,
                reference={k: reference.model_dump(mode="json")[k] for k in BUDGET_KEYS})


# --------------------------------------------------------------------------- the graph


class _Builder:
    """Builds the nodes of every cell, and of the cells they read, once each."""

    def __init__(self, suite: SuiteSpec, smoke: bool):
        self.suite, self.smoke = suite, smoke
        self.nodes: dict[str, RunSpec] = {}
        self.finals: dict[tuple[str, str, int], str] = {}  # (pair, label, seed) → run_id
        self.cells: dict[tuple[str, str], Cell] = {}
        self.exporting: set[tuple[str, str]] = set()  # cells whose runs must export what students read
        self.visiting: list[tuple[str, str]] = []

    def cell(self, pair: PairSpec, label: str) -> Cell:
        key = (pair.id, label)
        if key not in self.cells:
            strat = next(s for s in self.suite.strategies if s.label == label)
            self.cells[key] = resolve_cell(self.suite, pair, strat, self.smoke)
        return self.cells[key]

    def input_cell(self, pair: PairSpec, student: Cell, name: str) -> Cell:
        inp = student.inputs[name]
        if inp.label is not None:
            cell = self.cell(pair, inp.label)
        else:  # a run no cell of the suite makes (a source-spec teacher): an aux cell
            label = f"{student.label}-{name}"
            key = (pair.id, label)
            if key not in self.cells:
                self.cells[key] = resolve_cell(self.suite, pair, replace(inp.strategy, label=label), self.smoke,
                                               source=inp.source, role="aux")
            cell = self.cells[key]
        self.exporting.add((pair.id, cell.label))
        return cell

    def final(self, cell: Cell, seed: int) -> str:
        """run_id of ``cell``'s final at ``seed`` (an aux run when the seed is not a suite seed)."""
        key = (cell.pair.id, cell.label, seed)
        if key in self.finals:
            return self.finals[key]
        if (cell.pair.id, cell.label) in self.visiting:
            raise ValueError(f"runs read each other in a loop: {' → '.join(lab for _, lab in self.visiting)}")
        self.visiting.append((cell.pair.id, cell.label))
        inputs = self.inputs(cell, seed)
        # a final at a seed the suite does not run, or of a cell its pair leaves out (another cell's
        # teacher), is an aux run: made because something reads it, not for the leaderboard
        listed = cell.pair.strategies is None or cell.label in cell.pair.strategies
        role = cell.role if (seed in self.suite.seeds and listed) or cell.role != "final" else "aux"
        base = self.spec(cell, seed, role, inputs)
        if cell.search is None:
            cfg = base.base_config()
            run_id = make_run_id(cell.pair.id, cell.label, seed, cfg)
            node = replace(base, run_id=run_id)
        else:
            trials = self.trials(cell)
            cfg = {**base.base_config(), "search": cell.search.describe()}
            node = replace(base, run_id=make_run_id(cell.pair.id, cell.label, seed, cfg), search=cell.search,
                           depends_on=tuple(trials))
        node = replace(node, depends_on=tuple(dict.fromkeys([*node.depends_on, *inputs.values()])))
        self.visiting.pop()
        self.nodes[node.run_id] = node
        self.finals[key] = node.run_id
        return node.run_id

    def inputs(self, cell: Cell, seed: int) -> dict[str, str]:
        """The runs a run of ``cell`` at ``seed`` reads, by name: its strategy's inputs (a teacher)
        and, for a ``pretrain:`` source, the run that pretrained it."""
        found = {name: self.final(self.input_cell(cell.pair, cell, name), seed) for name in cell.inputs}
        pre = self.pretrain(cell)
        if pre is not None:
            found[PRETRAIN_INPUT] = pre
        return found

    def pretrain(self, cell: Cell) -> str | None:
        """run_id of the run that trains ``cell``'s source on its ``pretrain:`` task, an aux node made
        once per (source, pretrain block) and shared by every pair and seed that names the same
        block; None when the source has none or the cell's strategy starts from random weights."""
        from harness.registry import STRATEGIES

        block = cell.source.get("pretrain")  # resolve_cell drops it for a strategy from random weights
        if not block:
            return None
        source = {k: v for k, v in cell.source.items() if k != "pretrain"}
        strat = block["strategy"]
        cls = STRATEGIES.get(strat["name"])
        # the pretrain's block is its strategy layer; it has no pair and no override
        own = StrategySpec(strat["name"], strat["name"], train=block.get("train", {}))
        train = TrainConfig.model_validate(layered_settings(self.suite.defaults, strategy=own)[0])
        if self.smoke:
            train = smoke_train(train)
        train_d = train.model_dump(mode="json")
        pair = block.get("id") or f"pretrain-{config_hash({'source': source, **block})[:6]}"
        node = RunSpec(run_id="", suite=self.suite.suite, pair=pair, strategy=strat["name"], label=strat["name"],
                       seed=int(block.get("seed", 0)), source=source, target=dict(block["target"]), train=train_d,
                       params=cls.Params.model_validate(strat.get("params") or {}).model_dump(mode="json"),
                       smoke=self.smoke, price_per_gpu_hour=self.suite.price_per_gpu_hour, role="aux",
                       exports=(PRETRAIN_EXPORT,), reference={k: train_d[k] for k in BUDGET_KEYS})
        node = replace(node, run_id=make_run_id(pair, node.label, node.seed, node.base_config()))
        self.nodes.setdefault(node.run_id, node)
        return node.run_id

    def trials(self, cell: Cell) -> list[str]:
        search = cell.search
        assert search is not None
        ids: list[str] = []
        points: Sequence[dict[str, Any] | None] = ([None] * search.n_points() if search.sequential
                                               else search.points(f"{self.suite.suite}/{cell.pair.id}/{cell.label}"))
        if search.method == "grid" and search.extend_edges:  # slots past an edge: points known at run time
            points = [*points, *[None] * search.extend_edges]
        for k, point in enumerate(points):
            for seed in search.selection_seeds:
                inputs = self.inputs(cell, seed)
                base = self.spec(cell, seed, "trial", inputs)
                if point is None:  # drawn at run time from the trials before it: identity = (search, index)
                    cfg = {**base.base_config(), "search": search.describe(), "trial_index": k}
                    node = replace(base, search=search, trial_index=k,
                                   depends_on=tuple(ids) + tuple(inputs.values()))
                else:
                    node = replace(base.with_point(point), search=search, trial_index=k,
                                   depends_on=tuple(inputs.values()))
                    cfg = node.base_config()
                node = replace(node, run_id=make_run_id(cell.pair.id, cell.label, seed, cfg, trial=k))
                self.nodes.setdefault(node.run_id, node)
                ids.append(node.run_id)
        return ids

    def budget_check(self, cell: Cell) -> str | None:
        """run_id of the aux run that trains ``cell`` on the suite's first seed at
        ``BUDGET_CHECK_FACTOR`` × its epochs (and max_steps), at the point its search chooses; None
        for a cell that does not train by epochs (a closed-form fit) or that searches its budget."""
        if not trains_by_epochs(cell) or (cell.search is not None and set(cell.search.space) & BUDGET_SEARCHED):
            return None
        seed = self.suite.seeds[0]
        train = {**cell.train, "epochs": cell.train["epochs"] * BUDGET_CHECK_FACTOR}
        if cell.train.get("max_steps"):
            train["max_steps"] = cell.train["max_steps"] * BUDGET_CHECK_FACTOR
        inputs = self.inputs(cell, seed)
        base = replace(self.spec(replace(cell, train=train), seed, "aux", inputs), budget_check=BUDGET_CHECK_FACTOR)
        label = f"{cell.label}.x{BUDGET_CHECK_FACTOR}"
        if cell.search is None:
            node = replace(base, run_id=make_run_id(cell.pair.id, label, seed, base.base_config()))
        else:  # resolved by the driver as a final is: the point its trials choose
            cfg = {**base.base_config(), "search": cell.search.describe()}
            node = replace(base, run_id=make_run_id(cell.pair.id, label, seed, cfg), search=cell.search,
                           depends_on=tuple(self.trials(cell)))
        node = replace(node, depends_on=tuple(dict.fromkeys([*node.depends_on, *inputs.values()])))
        self.nodes.setdefault(node.run_id, node)
        return node.run_id

    def spec(self, cell: Cell, seed: int, role: str, inputs: Mapping[str, str]) -> RunSpec:
        return RunSpec(run_id="", suite=self.suite.suite, pair=cell.pair.id, strategy=cell.strategy, label=cell.label,
                       seed=seed, source=cell.source, target=cell.target, train=cell.train, params=cell.params,
                       smoke=self.smoke, price_per_gpu_hour=self.suite.price_per_gpu_hour, role=role,
                       inputs=dict(inputs), reference=cell.reference)


def expand(suite: SuiteSpec, smoke: bool = False) -> list[RunSpec]:
    """The plan: every node, dependencies before the runs that need them, otherwise ordered
    pair → strategy → seed (a cell's trials just before its finals)."""
    b = _Builder(suite, smoke)
    for pair in suite.pairs:
        for strat in suite.strategies:
            if pair.strategies is not None and strat.label not in pair.strategies:
                continue
            cell = b.cell(pair, strat.label)
            for seed in suite.seeds:
                b.final(cell, seed)
            if suite.budget_check:
                b.budget_check(cell)
    order: list[str] = []
    placed: set[str] = set()

    def place(run_id: str) -> None:
        if run_id in placed:
            return
        placed.add(run_id)
        for dep in b.nodes[run_id].depends_on:
            place(dep)
        order.append(run_id)

    for run_id in list(b.nodes):
        place(run_id)
    exporting = b.exporting
    nodes = [replace(n, exports=tuple(dict.fromkeys([*n.exports, "train_logits"]))) if (n.pair, n.label) in exporting
             else n for n in (b.nodes[i] for i in order)]
    return [replace(n, overrides=suite.overrides) for n in nodes] if suite.overrides else nodes


def trains_by_epochs(cell: Cell) -> bool:
    """Whether ``cell``'s strategy trains in the loop for its epochs (not a closed-form fit, whose
    budget is a solver's convergence)."""
    from harness.registry import STRATEGIES

    cls = STRATEGIES.get(cell.strategy)
    params = cls.Params.model_validate({k: v for k, v in cell.params.items() if v != SEARCHED})
    return "epochs" not in cls.unused_keys(params)


def closure(runs: list[RunSpec], chosen: list[RunSpec]) -> list[RunSpec]:
    """``chosen`` with every run they depend on, transitively, in plan order."""
    by_id = {r.run_id: r for r in runs}
    keep: set[str] = set()
    stack = [r.run_id for r in chosen]
    while stack:
        run_id = stack.pop()
        if run_id in keep:
            continue
        keep.add(run_id)
        stack += list(by_id[run_id].depends_on)
    return [r for r in runs if r.run_id in keep]


def count(runs: list[RunSpec]) -> dict[str, int]:
    """Runs per role."""
    return {role: sum(r.role == role for r in runs) for role in ROLES}
