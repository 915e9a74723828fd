"""YAML suite file → :class:`SuiteSpec`, or a :class:`ConfigError` listing every issue.

YAML is read with the safe loader only (``!!python/...`` tags are rejected). Every key is
checked against a schema; a misspelt key or registry name gets a did-you-mean; every error
carries ``file:line`` and the dotted key path. Nothing here imports torch directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.config.errors import ConfigError, Issue, UnknownNameError, did_you_mean
from harness.config.schema import (
    SLUG,
    TRAIN_KEYS,
    ComponentSpec,
    PairSpec,
    StrategySpec,
    SuiteSpec,
    TrainConfig,
)

Path_ = tuple[Any, ...]
TOP_KEYS = ("suite", "description", "seeds", "defaults", "pairs", "strategies", "price_per_gpu_hour")
PAIR_KEYS = ("id", "source", "target", "train", "overrides")


def format_path(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class Collector:
    """Gathers issues with the line each key path starts on."""

    def __init__(self, file: str, lines: Mapping[Path_, int] | None = None):
        self.file = file
        self.lines = dict(lines or {})
        self.issues: list[Issue] = []

    def line(self, path: Path_) -> int:
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return 1

    def add(self, path: Path_, message: str) -> None:
        self.issues.append(Issue(self.file, self.line(path), format_path(path), message))

    def unknown_key(self, path: Path_, key: str, allowed: Iterable[str]) -> None:
        allowed = sorted(allowed)
        close = did_you_mean(str(key), allowed)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        self.add((*path, key), f"unknown key '{key}'.{hint} Valid keys: {', '.join(allowed)}.")

    def model(self, cls: type[BaseModel], data: Any, path: Path_) -> BaseModel | None:
        """Validate ``data`` against a pydantic model, turning its errors into issues."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            for err in e.errors():
                loc = (*path, *err["loc"])
                if err["type"] == "extra_forbidden":
                    self.unknown_key(path + tuple(err["loc"][:-1]), str(err["loc"][-1]), cls.model_fields)
                else:
                    self.add(loc, f"{err['msg']} (got {err.get('input')!r})")
            return None


MAX_YAML_NODES = 100_000  # aliases are walked once per use: a bound against "billion laughs" files


def _line_map(node: yaml.Node, col: Collector, path: Path_ = (), _open: set[int] | None = None,
              _budget: list[int] | None = None) -> None:
    if _open is None or _budget is None:
        _open, _budget = set(), [MAX_YAML_NODES]
    col.lines.setdefault(path, node.start_mark.line + 1)
    _budget[0] -= 1
    if _budget[0] == 0:
        col.add(path, f"more than {MAX_YAML_NODES} YAML nodes once aliases are expanded; not a suite file")
    if id(node) in _open or _budget[0] <= 0:
        if id(node) in _open:
            col.add(path, "recursive YAML alias (a value that contains itself)")
        return
    _open.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                col.lines[path] = k.start_mark.line + 1
                col.add(path, f"keys must be plain strings, got a YAML {k.id} key")
                continue
            key = k.value
            if key in seen:
                col.lines[path + (key,)] = k.start_mark.line + 1
                col.add((*path, key), "duplicate key (YAML would silently keep the last one)")
            seen.add(key)
            col.lines[path + (key,)] = k.start_mark.line + 1
            _line_map(v, col, (*path, key), _open, _budget)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, col, (*path, i), _open, _budget)
    _open.discard(id(node))


def read_yaml(path: Path, col: Collector) -> Any:
    """Parse with line marks; YAML syntax errors and unsafe tags become issues."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        col.add((), "file not found")
        return None
    except (OSError, UnicodeDecodeError) as e:
        col.add((), f"cannot read file: {e}")
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            _line_map(node, col)
        return yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 - SafeLoader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        col.issues.append(Issue(col.file, line, "", f"invalid YAML: {e.problem or e}"))
    except yaml.YAMLError as e:
        col.add((), f"invalid YAML: {e}")
    return None


def _mapping(col: Collector, data: Any, path: Path_, what: str) -> dict | None:
    if not isinstance(data, dict):
        col.add(path, f"{what} must be a mapping, got {type(data).__name__}")
        return None
    bad = [k for k in data if not isinstance(k, str)]
    for k in bad:
        col.add((*path, k), f"keys must be strings, got {type(k).__name__} {k!r}")
    return {k: v for k, v in data.items() if isinstance(k, str)}


def _slug(col: Collector, value: Any, path: Path_, what: str) -> str | None:
    import re

    if not isinstance(value, str) or not re.match(SLUG, value):
        col.add(path, f"{what} must match {SLUG} (letters, digits, '_', '-'; it names files), got {value!r}")
        return None
    return value


def _component(col: Collector, data: Any, path: Path_, kind: str) -> tuple[ComponentSpec | None, Any]:
    """Check a ``source:`` or ``target:`` block against its registry entry."""
    from harness.registry import SOURCES, TARGETS, TASKS

    key = "model" if kind == "source" else "dataset"
    registry = SOURCES if kind == "source" else TARGETS
    data = _mapping(col, data, path, kind)
    if data is None:
        return None, None
    ref = data.get(key)
    if not isinstance(ref, str) or "/" not in ref:
        col.add((*path, key), f"required: '<namespace>/<name>' naming a registered {kind} namespace "
                f"({', '.join(registry.names())}), got {ref!r}")
        return None, None
    ns, name = ref.split("/", 1)
    try:
        entry = registry.get(ns)
    except UnknownNameError as e:
        col.add((*path, key), str(e).replace(f"{kind} '", f"{kind} namespace '"))
        return None, None
    try:
        entry.check_name(name)
    except ValueError as e:
        col.add((*path, key), str(e))
        name_ok = False
    else:
        name_ok = True
    task = None
    params = {k: v for k, v in data.items() if k not in (key, "task")}
    if kind == "target":
        task = data.get("task")
        if task is None:
            task = entry.default_task
            if task is None:
                col.add(path, f"missing required key 'task' (target '{ref}' provides: {', '.join(sorted(entry.tasks))})")
        elif not isinstance(task, str) or task not in TASKS:
            col.add((*path, "task"), str(UnknownNameError("task", str(task), TASKS.names())))
            task = None
        elif task not in entry.tasks:
            col.add((*path, "task"), f"target '{ref}' does not provide task '{task}' (it provides: {', '.join(sorted(entry.tasks))})")
            task = None
    model = col.model(entry.Params, params, path)
    if not name_ok:
        return None, None
    if model is None:
        return None, entry
    return ComponentSpec(ref, _set_fields(model), task), entry


def _split_strategy_keys(col: Collector, name: str, block: dict, path: Path_,
                         allow_label: bool) -> StrategySpec | None:
    from harness.registry import STRATEGIES

    cls = STRATEGIES.get(name)
    own = set(cls.Params.model_fields)
    allowed = own | TRAIN_KEYS | ({"label"} if allow_label else set())
    params, train, ok = {}, {}, True
    for k, v in block.items():
        if k in own:
            params[k] = v
        elif k in TRAIN_KEYS:
            train[k] = v
        elif k != "label" or not allow_label:
            col.unknown_key(path, k, allowed)
            ok = False
    p_model, t_model = col.model(cls.Params, params, path), col.model(TrainConfig, train, path)
    label = block.get("label", name)
    if allow_label and _slug(col, label, (*path, "label"), "label") is None:
        ok = False
    if not ok or p_model is None or t_model is None:
        return None
    return StrategySpec(name, label, _set_fields(p_model), _set_fields(t_model))


def _set_fields(model: BaseModel | None) -> dict[str, Any]:
    """The keys the file set, parsed (``"1e-3"`` → 0.001), defaults left out."""
    return {} if model is None else model.model_dump(mode="json", exclude_unset=True)


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
    mapping = _mapping(col, block, (*path, name), f"strategy '{name}' block")
    if mapping is None:
        return None
    return _split_strategy_keys(col, name, mapping, (*path, name), allow_label=True)


def _pair(col: Collector, data: Any, path: Path_, labels: dict[str, StrategySpec]) -> PairSpec | None:
    from harness.registry import TASKS

    data = _mapping(col, data, path, "pair")
    if data is None:
        return None
    for k in data:
        if k not in PAIR_KEYS:
            col.unknown_key(path, k, PAIR_KEYS)
    pid = _slug(col, data.get("id"), (*path, "id"), "pair id")
    if "source" not in data:
        col.add(path, "missing required key 'source'")
    if "target" not in data:
        col.add(path, "missing required key 'target'")
    source, src_entry = _component(col, data.get("source"), (*path, "source"), "source") if "source" in data else (None, None)
    target, tgt_entry = _component(col, data.get("target"), (*path, "target"), "target") if "target" in data else (None, None)
    if source and target and target.task and src_entry is not None:
        task = TASKS.get(target.task)
        src_mod = src_entry.modality(source.name)
        if src_mod != task.modality:
            col.add((*path, "target", "task"), f"task '{task.name}' needs a {task.modality} model, "
                    f"but source '{source.ref}' is a {src_mod} model")
    train = _mapping(col, data.get("train", {}), (*path, "train"), "train") or {}
    train = _set_fields(col.model(TrainConfig, train, (*path, "train")))
    overrides: dict[str, StrategySpec] = {}
    ov = _mapping(col, data.get("overrides", {}), (*path, "overrides"), "overrides") or {}
    for label, block in ov.items():
        opath = (*path, "overrides", label)
        if label not in labels:
            close = did_you_mean(label, labels)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            col.add(opath, f"no strategy labelled '{label}' in this suite.{hint}")
            continue
        block = _mapping(col, block if block is not None else {}, opath, "override")
        if block is not None:
            spec = _split_strategy_keys(col, labels[label].name, block, opath, allow_label=False)
            if spec:
                overrides[label] = spec
    if pid is None or source is None or target is None:
        return None
    return PairSpec(pid, source, target, train, overrides)


def parse_suite(data: Any, col: Collector) -> SuiteSpec | None:
    """Check a parsed YAML document; record issues in ``col``; return a spec if clean."""
    from harness.registry import STRATEGIES

    data = _mapping(col, data, (), "a suite file")
    if data is None:
        return None
    for k in data:
        if k not in TOP_KEYS:
            col.unknown_key((), k, TOP_KEYS)
    for k in ("suite", "seeds", "pairs", "strategies"):
        if k not in data:
            col.add((), f"missing required key '{k}'")
    suite = _slug(col, data.get("suite"), ("suite",), "suite name") if "suite" in data else None
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
    defaults = _mapping(col, data.get("defaults", {}), ("defaults",), "defaults") or {}
    defaults = _set_fields(col.model(TrainConfig, defaults, ("defaults",)))

    strategies: list[StrategySpec] = []
    raw = data.get("strategies", [])
    if not isinstance(raw, list) or not raw:
        col.add(("strategies",), "must be a non-empty list")
        raw = []
    for i, item in enumerate(raw):
        spec = _strategy(col, item, ("strategies", i))
        if spec is None:
            continue
        if any(s.label == spec.label for s in strategies):
            col.add(("strategies", i), f"label '{spec.label}' is used twice; give one of them `label: …`")
        strategies.append(spec)
    labels = {s.label: s for s in strategies}

    pairs: list[PairSpec] = []
    rawp = data.get("pairs", [])
    if not isinstance(rawp, list) or not rawp:
        col.add(("pairs",), "must be a non-empty list")
        rawp = []
    for i, item in enumerate(rawp):
        p = _pair(col, item, ("pairs", i), labels)
        if p is None:
            continue
        if any(q.id == p.id for q in pairs):
            col.add(("pairs", i, "id"), f"pair id '{p.id}' is used twice")
        pairs.append(p)

    if col.issues or suite is None:
        return None
    suite_spec = SuiteSpec(suite=suite, path=col.file, seeds=tuple(seeds), defaults=defaults, pairs=tuple(pairs),
                     strategies=tuple(strategies), description=description or "", price_per_gpu_hour=price)
    # Strategy checks that need the whole suite (a teacher that exists, a depth that fits).
    for i, s in enumerate(suite_spec.strategies):
        cls = STRATEGIES.get(s.name)
        for pair in suite_spec.pairs:
            params = cls.Params.model_validate({**s.params, **(pair.overrides[s.label].params if s.label in pair.overrides else {})})
            for msg in cls.check(params, pair, suite_spec):
                col.add(("strategies", i, s.name), f"pair '{pair.id}': {msg}")
    return None if col.issues else suite_spec


def load_suite(path: str | Path) -> SuiteSpec:
    """Load and check a suite file; raise :class:`ConfigError` with every issue found."""
    path = Path(path)
    col = Collector(str(path))
    data = read_yaml(path, col)
    spec = None if data is None else parse_suite(data, col)  # go on after e.g. duplicate keys: report all
    if spec is None:
        if not col.issues:
            col.add((), "empty suite file")
        raise ConfigError(col.issues)
    return spec
