"""A suite file → a checked :class:`SuiteSpec`, or a :class:`ConfigError` listing every issue.

The assembly of the pieces below it: the bounded YAML reading (:mod:`harness.config.load`), the
components (:mod:`harness.config.components`), every ``search:`` block (:func:`harness.search.
parse_search`), strategy entries, pairs and a source's ``pretrain:`` block (a strategy of its own);
then the checks that need the plan (:mod:`harness.plan_checks`). It sits at the plan's layer
because search blocks and cell checks live there; the config layer below imports none of them.
Every key is checked against a schema; a misspelt key or registry name gets a did-you-mean; every
error carries ``file:line`` and the dotted key path. Nothing here imports torch directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.config.components import component, pretrain_leak, task_for
from harness.config.issues import Collector, Path_, set_fields
from harness.config.load import read_yaml
from harness.config.overrides import apply as apply_overrides
from harness.config.overrides import parse as parse_override
from harness.config.schema import TRAIN_KEYS, PairSpec, SearchLayer, StrategySpec, SuiteSpec, TrainConfig
from harness.errors import ConfigError, UnknownNameError, did_you_mean
from harness.plan_checks import check_cells
from harness.search import parse_search, pop_search

TOP_KEYS = ("suite", "description", "seeds", "defaults", "pairs", "strategies", "price_per_gpu_hour", "budget_check")
PAIR_KEYS = ("id", "source", "target", "train", "overrides", "strategies")
PRETRAIN_KEYS = ("id", "target", "strategy", "train", "seed")
PRETRAIN_STRATEGIES = ("scratch", "full_finetune")  # they train the backbone's own modules, changing none


def _pretrain(col: Collector, block: Any, path: Path_, modality: str | None) -> dict[str, Any] | None:
    """A source's ``pretrain:`` block, checked and normalised: ``{id, target, strategy: {name,
    params}, train, seed}`` (:meth:`harness.plan._Builder.pretrain` makes it a node of the graph)."""
    from harness.registry import TASKS

    block = col.mapping(block, path, "pretrain")
    if block is None:
        return None
    ok = True
    for k in block:
        if k not in PRETRAIN_KEYS:
            col.unknown_key(path, k, PRETRAIN_KEYS)
            ok = False
    pid = block.get("id")
    if pid is not None and col.slug(pid, (*path, "id"), "pretrain id") is None:
        ok = False
    if "target" not in block:
        col.add(path, "missing required key 'target': the dataset the source is trained on first, e.g. "
                "target: {dataset: sklearn/digits, classes: [0, 1, 2, 3, 4]}")
        return None
    raw_target = block["target"]
    if isinstance(raw_target, dict) and "task" not in raw_target and modality is not None:
        task = task_for(raw_target.get("dataset"), modality)
        raw_target = {**raw_target, "task": task} if task else raw_target
    target, _ = component(col, raw_target, (*path, "target"), "target")
    if target is not None and target.task is not None and modality is not None \
            and TASKS.get(target.task).modality != modality:
        col.add((*path, "target", "task"), f"task '{target.task}' needs a {TASKS.get(target.task).modality} model, "
                f"but the source is {'an' if modality[0] in 'aeiou' else 'a'} {modality} model")
        ok = False
    if target is not None and ("unlabeled" in target.params or "eval_domain" in target.params):
        col.add((*path, "target"), "a pretrain target is trained on, supervised: it takes no unlabeled or "
                "eval_domain data")
        ok = False
    raw = block.get("strategy", "full_finetune")
    strat = _strategy(col, raw, (*path, "strategy"))
    if strat is not None and strat.name not in PRETRAIN_STRATEGIES:
        col.add((*path, "strategy"), f"a source is pretrained by {' or '.join(PRETRAIN_STRATEGIES)} (strategies that "
                f"train the backbone's own modules and add none, so its weights load into every run), got "
                f"'{strat.name}'")
        ok = False
    if strat is not None and (strat.search or strat.label != strat.name):
        col.add((*path, "strategy"), "a pretrain strategy takes no label and no search: the source is trained once")
        ok = False
    train = col.mapping(block.get("train", {}), (*path, "train"), "train") or {}
    if "search" in train:
        col.add((*path, "train", "search"), "a pretrain is trained once: no search (set its values)")
        ok = False
        train = {k: v for k, v in train.items() if k != "search"}
    train_model = col.model(TrainConfig, train, (*path, "train"))
    seed = block.get("seed", 0)
    if type(seed) is not int or seed < 0:
        col.add((*path, "seed"), f"must be a non-negative integer (the pretrain's one seed), got {seed!r}")
        ok = False
    if not ok or target is None or strat is None or train_model is None:
        return None
    out = {"target": target.as_dict("dataset"), "strategy": {"name": strat.name, "params": strat.params},
           "train": {**strat.train, **set_fields(train_model)}, "seed": seed}
    return {"id": pid, **out} if pid is not None else out


def _pretrain_ids(col: Collector, pairs: list[PairSpec]) -> None:
    """A pretrain's ``id`` names its run (and record files): one block per id, never a pair's id."""
    blocks: dict[str, tuple[str, Any]] = {}
    pair_ids = {p.id for p in pairs}
    for i, p in enumerate(pairs):
        block = p.source.params.get("pretrain")
        pid = block.get("id") if isinstance(block, dict) else None
        if pid is None:
            continue
        where = ("pairs", i, "source", "pretrain", "id")
        if pid in pair_ids:
            col.add(where, f"pretrain id '{pid}' is also a pair id: the two would share record names; rename one")
        body = ({k: v for k, v in p.source.params.items() if k != "pretrain"}, p.source.ref, block)
        if pid in blocks and blocks[pid][1] != body:
            col.add(where, f"pretrain id '{pid}' names another block (pair '{blocks[pid][0]}'): one id, one pretrain")
        blocks.setdefault(pid, (p.id, body))


def _split_strategy_keys(col: Collector, name: str, block: dict, path: Path_,
                         allow_label: bool) -> StrategySpec | None:
    from harness.registry import STRATEGIES

    cls = STRATEGIES.get(name)
    own = set(cls.Params.model_fields)
    allowed = own | TRAIN_KEYS | {"search"} | ({"label"} if allow_label else set())
    params, train, ok = {}, {}, True
    search = SearchLayer()
    if "search" in block:
        search = parse_search(col, block["search"], (*path, "search"), {name: cls.Params})
    for k, v in block.items():
        if k == "search":
            continue
        if k in own:
            params[k] = v
        elif k in TRAIN_KEYS:
            train[k] = v
        elif k != "label" or not allow_label:
            col.unknown_key(path, k, allowed)
            ok = False
    p_model, t_model = col.model(cls.Params, params, path), col.model(TrainConfig, train, path)
    label = block.get("label", name)
    if allow_label and col.slug(label, (*path, "label"), "label") is None:
        ok = False
    if not ok or p_model is None or t_model is None:
        return None
    return StrategySpec(name, label, set_fields(p_model), set_fields(t_model), search)


def _strategy(col: Collector, item: Any, path: Path_) -> StrategySpec | None:
    from harness.registry import STRATEGIES

    block: Any
    if isinstance(item, str):
        name, block = item, {}
    elif isinstance(item, dict) and len(item) == 1:
        name, block = next(iter(item.items()))
        block = {} if block is None else block
        if not isinstance(name, str):
            col.add(path, f"strategy name must be a string, got {name!r}")
            return None
    else:
        col.add(path, "each strategy is a name, or a one-key mapping {name: {params}}")
        return None
    if name not in STRATEGIES:
        col.add(path if isinstance(item, str) else (*path, name), str(UnknownNameError("strategy", name, STRATEGIES.names())))
        return None
    mapping = col.mapping(block, (*path, name), f"strategy '{name}' block")
    if mapping is None:
        return None
    return _split_strategy_keys(col, name, mapping, (*path, name), allow_label=True)


def _written_label(item: Any) -> str | None:
    """The label a strategy entry meant to define, read from the raw entry (for one that failed)."""
    if isinstance(item, str):
        return item
    if isinstance(item, dict) and len(item) == 1:
        name, block = next(iter(item.items()))
        label = block.get("label", name) if isinstance(block, dict) else name
        return label if isinstance(label, str) else None
    return None


def _unknown_label(col: Collector, label: str, path: Path_, labels: Mapping[str, StrategySpec],
                   broken: frozenset[str]) -> None:
    """A reference to a label no strategy defines: an error, unless a strategy entry that already
    has its own error meant to define it (``ful_finetune`` misspelt there, ``full_finetune`` named
    here) — the cause is reported once, on the line that has it, not again on a correct line."""
    if label in broken or did_you_mean(label, broken):
        return
    close = did_you_mean(label, labels)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    col.add(path, f"no strategy labelled '{label}' in this suite.{hint}")


def _pair(col: Collector, data: Any, path: Path_, labels: dict[str, StrategySpec],
          owners: Mapping[str, type[BaseModel]], broken: frozenset[str] = frozenset()) -> PairSpec | None:
    from harness.registry import TASKS

    data = col.mapping(data, path, "pair")
    if data is None:
        return None
    for k in data:
        if k not in PAIR_KEYS:
            col.unknown_key(path, k, PAIR_KEYS)
    pid = col.slug(data.get("id"), (*path, "id"), "pair id")
    if "source" not in data:
        col.add(path, "missing required key 'source'")
    if "target" not in data:
        col.add(path, "missing required key 'target'")
    source, src_entry = component(col, data.get("source"), (*path, "source"), "source", _pretrain) if "source" in data else (None, None)
    target, tgt_entry = component(col, data.get("target"), (*path, "target"), "target") if "target" in data else (None, None)
    if source and target and target.task and src_entry is not None:
        task = TASKS.get(target.task)
        src_mod = src_entry.modality(source.name)
        if src_mod != task.modality:
            col.add((*path, "target", "task"), f"task '{task.name}' needs a {task.modality} model, "
                    f"but source '{source.ref}' is a {src_mod} model")
    if source and target and "pretrain" in source.params and tgt_entry is not None:
        pretrain_leak(col, source.params["pretrain"], target, tgt_entry, (*path, "source", "pretrain", "target"))
    train = col.mapping(data.get("train", {}), (*path, "train"), "train") or {}
    train, search = pop_search(col, train, (*path, "train"), owners)
    train = set_fields(col.model(TrainConfig, train, (*path, "train")))
    only = None
    if "strategies" in data:
        raw = data["strategies"]
        if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
            col.add((*path, "strategies"), f"must be a non-empty list of strategy labels, got {raw!r}")
        else:
            for i, label in enumerate(raw):
                if label not in labels:
                    _unknown_label(col, label, (*path, "strategies", i), labels, broken)
            only = tuple(raw)
    overrides: dict[str, StrategySpec] = {}
    ov = col.mapping(data.get("overrides", {}), (*path, "overrides"), "overrides") or {}
    for label, block in ov.items():
        opath = (*path, "overrides", label)
        if label not in labels:
            _unknown_label(col, label, opath, labels, broken)
            continue
        block = col.mapping(block if block is not None else {}, opath, "override")
        if block is not None:
            spec = _split_strategy_keys(col, labels[label].name, block, opath, allow_label=False)
            if spec:
                overrides[label] = spec
    if pid is None or source is None or target is None:
        return None
    return PairSpec(pid, source, target, train, overrides, search, only)


def parse_suite(data: Any, col: Collector) -> SuiteSpec | None:
    """Check a parsed YAML document; record issues in ``col``; return a spec if clean."""
    from harness.registry import STRATEGIES

    data = col.mapping(data, (), "a suite file")
    if data is None:
        return None
    for k in data:
        if k not in TOP_KEYS:
            col.unknown_key((), k, TOP_KEYS)
    for k in ("suite", "seeds", "pairs", "strategies"):
        if k not in data:
            col.add((), f"missing required key '{k}'")
    suite = col.slug(data.get("suite"), ("suite",), "suite name") if "suite" in data else None
    description = data.get("description", "")
    if not isinstance(description, str):
        col.add(("description",), "must be a string")
    seeds = data.get("seeds", [])
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
        col.add(("seeds",), f"must be a non-empty list of non-negative integers, got {seeds!r}")
        seeds = []
    elif len(set(seeds)) != len(seeds):
        col.add(("seeds",), f"seeds must be unique, got {seeds!r}")
    price = data.get("price_per_gpu_hour")
    if price is not None and (isinstance(price, bool) or not isinstance(price, int | float) or price < 0):
        col.add(("price_per_gpu_hour",), f"must be a non-negative number, got {price!r}")
    budget_check = data.get("budget_check", False)
    if type(budget_check) is not bool:
        col.add(("budget_check",), f"must be true or false, got {budget_check!r}")
    defaults = col.mapping(data.get("defaults", {}), ("defaults",), "defaults") or {}
    raw_defaults_search = defaults.get("search")
    defaults = set_fields(col.model(TrainConfig, {k: v for k, v in defaults.items() if k != "search"}, ("defaults",)))

    strategies: list[StrategySpec] = []
    raw = data.get("strategies", [])
    if not isinstance(raw, list) or not raw:
        col.add(("strategies",), "must be a non-empty list")
        raw = []
    broken: set[str] = set()  # labels of entries that failed, each with its own error already
    for i, item in enumerate(raw):
        spec = _strategy(col, item, ("strategies", i))
        if spec is None:
            written = _written_label(item)
            if written is not None:
                broken.add(written)
            continue
        if any(s.label == spec.label for s in strategies):
            col.add(("strategies", i), f"label '{spec.label}' is used twice; give one of them `label: …`")
        strategies.append(spec)
    labels = {s.label: s for s in strategies}
    # a search in defaults or a pair may name any training key or a parameter of a strategy of the suite
    owners = {s.name: STRATEGIES.get(s.name).Params for s in strategies}
    search = SearchLayer() if raw_defaults_search is None else \
        parse_search(col, raw_defaults_search, ("defaults", "search"), owners)

    pairs: list[PairSpec] = []
    rawp = data.get("pairs", [])
    if not isinstance(rawp, list) or not rawp:
        col.add(("pairs",), "must be a non-empty list")
        rawp = []
    for i, item in enumerate(rawp):
        p = _pair(col, item, ("pairs", i), labels, owners, frozenset(broken - set(labels)))
        if p is None:
            continue
        if any(q.id == p.id for q in pairs):
            col.add(("pairs", i, "id"), f"pair id '{p.id}' is used twice")
        pairs.append(p)

    _pretrain_ids(col, pairs)
    if col.issues or suite is None:
        return None
    suite_spec = SuiteSpec(suite=suite, path=col.file, seeds=tuple(seeds), defaults=defaults, pairs=tuple(pairs),
                           strategies=tuple(strategies), description=description or "", price_per_gpu_hour=price,
                           search=search, budget_check=budget_check is True)
    # Strategy checks that need the whole suite (a teacher that exists, a depth that fits), for the
    # values each cell will run with: its own, and every point of its search.
    warnings = check_cells(suite_spec, col)
    if col.issues:
        return None
    return replace(suite_spec, warnings=tuple(warnings))


def load_suite(path: str | Path, overrides: Sequence[str] = ()) -> SuiteSpec:
    """Load and check a suite file, with ``overrides`` (``--set`` texts, ``KEY.PATH=VALUE``)
    applied to its data first and checked as the file is; raise :class:`ConfigError` with every
    issue found (an overridden value's issues name its ``--set``)."""
    path = Path(path)
    col = Collector(str(path))
    parsed = [ov for ov in (parse_override(text, col) for text in overrides) if ov is not None]
    data = read_yaml(path, col)
    if data is not None and parsed:
        data = apply_overrides(data, parsed, col)
    spec = None if data is None else parse_suite(data, col)  # go on after e.g. duplicate keys: report all
    if spec is None:
        if not col.issues:
            col.add((), "empty suite file")
        raise ConfigError(col.issues)
    return replace(spec, overrides=tuple(overrides)) if overrides else spec
