"""YAML suite file → :class:`SuiteSpec`, or a :class:`ConfigError` listing every issue.

YAML is read with the safe loader only (``!!python/...`` tags are rejected). Every key is
checked against a schema; a misspelt key or registry name gets a did-you-mean; every error
carries ``file:line`` and the dotted key path. Nothing here imports torch directly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness.config.schema import (
    SEARCH_OPTIONS,
    SLUG,
    TRAIN_KEYS,
    ComponentSpec,
    PairSpec,
    SearchLayer,
    StrategySpec,
    SuiteSpec,
    TrainConfig,
)
from harness.errors import ConfigError, Issue, UnknownNameError, did_you_mean

Path_ = tuple[Any, ...]
TOP_KEYS = ("suite", "description", "seeds", "defaults", "pairs", "strategies", "price_per_gpu_hour")
PAIR_KEYS = ("id", "source", "target", "train", "overrides", "strategies")
SEARCH_METHODS = ("grid", "random", "tpe")
DISTRIBUTIONS = ("log_uniform", "uniform", "int")
MAX_GRID_POINTS = 1000


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
        self.exhausting = False  # an issue said the file is built to exhaust time or memory

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
MAX_SUITE_BYTES = 1 << 20  # a suite file is a few KB; 1 MiB leaves room for generated grids
MAX_DEPTH = 64  # nesting levels of lists and maps (a suite needs about 6)
MAX_COMPOSED_NODES = 20_000  # nodes written in the file (a suite has hundreds; aliases count once here)
MAX_NUMBER_DIGITS = 100  # an integer longer than this is no setting (Python's int() limit is 4,300)
MAX_SCALAR_CHARS = 65_536  # one value (a path, a description)


def _line_map(node: yaml.Node, col: Collector, path: Path_ = (), _open: set[int] | None = None,
              _budget: list[int] | None = None) -> None:
    if _open is None or _budget is None:
        _open, _budget = set(), [MAX_YAML_NODES]
    col.lines.setdefault(path, node.start_mark.line + 1)
    _budget[0] -= 1
    if _budget[0] == 0:
        _exhausting(col, path, f"more than {MAX_YAML_NODES} YAML nodes once aliases are expanded; not a suite file")
    if id(node) in _open or _budget[0] <= 0:
        if id(node) in _open:
            _exhausting(col, path, "recursive YAML alias (a value that contains itself)")
        return
    if len(path) > MAX_DEPTH:
        _exhausting(col, path[:MAX_DEPTH], f"nested more than {MAX_DEPTH} levels deep; not a suite file")
        _budget[0] = 0  # one issue, then stop walking
        return
    if isinstance(node, yaml.ScalarNode):
        if len(node.value) > MAX_SCALAR_CHARS:
            _exhausting(col, path, f"a value of {len(node.value):,} characters (at most {MAX_SCALAR_CHARS:,})")
        elif node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_NUMBER_DIGITS:
            _exhausting(col, path, f"a number of {len(node.value):,} digits (at most {MAX_NUMBER_DIGITS}): no setting is that large")
        elif not node.style and not finite(node):
            _exhausting(col, path, f"{node.value!r} is not a finite number: no setting is infinite or NaN")
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


def read_text(path: Path, col: Collector) -> str | None:
    """The file's text, or None with an issue: only a regular file of at most ``MAX_SUITE_BYTES``
    is read (a FIFO, ``/dev/stdin`` or a device could block forever or never end)."""
    import stat

    try:
        info = path.stat()
    except FileNotFoundError:
        col.add((), "file not found")
        return None
    except OSError as e:
        col.add((), f"cannot read file: {e}")
        return None
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a directory" if stat.S_ISDIR(info.st_mode) else \
            "a device or socket"
        col.add((), f"not a regular file ({kind}): a suite is read from a file on disk")
        return None
    if info.st_size > MAX_SUITE_BYTES:
        col.add((), f"the file is {info.st_size / (1 << 20):.1f} MiB; a suite file is at most {MAX_SUITE_BYTES >> 20} MiB")
        return None
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SUITE_BYTES + 1)  # the file may have grown since stat
        if len(raw) > MAX_SUITE_BYTES:
            col.add((), f"the file is over {MAX_SUITE_BYTES >> 20} MiB; a suite file is at most {MAX_SUITE_BYTES >> 20} MiB")
            return None
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        col.add((), f"cannot read file: {e}")
        return None


def read_yaml(path: Path, col: Collector) -> Any:
    """Parse with line marks; YAML syntax errors, unsafe tags and files built to exhaust time or
    memory (size, nesting, alias expansion, enormous scalars) become issues, before any value is built."""
    text = read_text(path, col)
    if text is None:
        return None
    try:
        loader = BoundedLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _line_map(node, col)
            if col.exhausting:
                return None  # building the values is what such a file is made to exhaust
            return loader.construct_document(node)  # SafeConstructor, from the nodes already checked
        finally:
            loader.dispose()
    except Exhausting as e:
        col.issues.append(Issue(col.file, e.line, "", e.message))
        return None
    except RecursionError:  # the scanner's own recursion, before the composer's bound
        col.add((), f"nested too deeply to parse (a suite nests about 6 levels; at most {MAX_DEPTH})")
        return None
    except ValueError as e:  # an int beyond Python's digit limit that the scan did not see as one
        col.add((), f"a value YAML cannot build: {e}")
        return None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        if "maximum nesting depth" in str(e.problem):  # libyaml's own bound, met while it scans ahead
            col.issues.append(Issue(col.file, line, "", f"nested more than {MAX_DEPTH} levels deep; not a suite file"))
            col.exhausting = True
        else:
            col.issues.append(Issue(col.file, line, "", f"invalid YAML: {e.problem or e}"))
    except yaml.YAMLError as e:
        col.add((), f"invalid YAML: {e}")
    return None


NUMBER = re.compile(r"[-+]?(\d[\d_]*)?\.?\d*([eE][-+]?\d+)?")


def finite(node: yaml.ScalarNode) -> bool:
    """Whether a plain scalar that reads as a number (YAML's ``.inf``, ``.nan``, or ``1e400``, which
    the harness would parse to inf) is finite; other scalars are."""
    text = node.value.strip()
    if node.tag == "tag:yaml.org,2002:float":
        text = text.lower().replace("_", "")
        if text.lstrip("+-") in (".inf", ".nan"):
            return False
    elif not (text and NUMBER.fullmatch(text) and any(c.isdigit() for c in text)):
        return True
    try:
        return math.isfinite(float(text.replace("_", "")))
    except ValueError:
        return True


try:
    from yaml.cyaml import CParser as _EventSource  # libyaml, where PyYAML was built with it
except ImportError:  # pragma: no cover - a PyYAML without libyaml
    class _EventSource(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[no-redef]
        def __init__(self, stream):
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


class BoundedLoader(yaml.composer.Composer, _EventSource, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """SafeLoader's composer with a bound on the nodes it builds and on their nesting, checked as it
    goes: a file built to exhaust memory or the stack stops at the bound, not at the end. Events
    come from libyaml's parser where PyYAML has it (it keeps its own stack, no recursion: several
    times faster than the pure-Python scanner), else from PyYAML's; the composing, and so the
    bounds, are Python's either way."""

    def __init__(self, stream):
        _EventSource.__init__(self, stream)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self.composed, self.depth = 0, 0

    def compose_node(self, parent, index):
        self.composed += 1
        if self.composed > MAX_COMPOSED_NODES:
            raise Exhausting(f"more than {MAX_COMPOSED_NODES:,} YAML nodes; not a suite file", self.peek_event().start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise Exhausting(f"nested more than {MAX_DEPTH} levels deep; not a suite file",
                                 self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


class Exhausting(Exception):
    """A suite file built to exhaust time or memory, stopped while composing."""

    def __init__(self, message: str, mark):
        super().__init__(message)
        self.message, self.line = message, mark.line + 1


def _exhausting(col: Collector, path: Path_, message: str) -> None:
    """An issue that marks the file as built to exhaust time or memory: no value is built from it."""
    col.add(path, message)
    col.exhausting = True


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
    cross: dict[str, dict[str, Any]] = {}
    if kind == "source" and "pretrain" in params:
        pretrain = _pretrain(col, params.pop("pretrain"), (*path, "pretrain"), entry.modality(name) if name_ok else None)
        if pretrain is not None:
            cross["pretrain"] = pretrain
    if kind == "target":
        for k in ("unlabeled", "eval_domain"):
            if isinstance(params.get(k), dict):
                other = _other_domain(col, params.pop(k), (*path, k), k, task)
                if other is not None:
                    cross[k] = other
            elif params.get(k) is not None and k not in entry.Params.model_fields:
                col.add((*path, k), f"target '{ref}' has no domains of its own: name another target as the "
                        f"{'unlabeled target domain' if k == 'unlabeled' else 'evaluated domain'}, e.g. "
                        f"{k}: {{dataset: imagefolder/path/to/other}} (docs/strategies.md, Domain adaptation)")
                params.pop(k)
    model = col.model(entry.Params, params, path)
    if not name_ok:
        return None, None
    if model is None:
        return None, entry
    return ComponentSpec(ref, {**_set_fields(model), **cross}, task), entry


PRETRAIN_KEYS = ("id", "target", "strategy", "train", "seed")
PRETRAIN_STRATEGIES = ("scratch", "full_finetune")  # they train the backbone's own modules, changing none


def _pretrain(col: Collector, block: Any, path: Path_, modality: str | None) -> dict[str, Any] | None:
    """A source's ``pretrain:`` block, checked and normalised: ``{id, target, strategy: {name,
    params}, train, seed}`` (:meth:`harness.plan._Builder.pretrain` makes it a node of the graph)."""
    from harness.registry import TASKS

    block = _mapping(col, block, path, "pretrain")
    if block is None:
        return None
    ok = True
    for k in block:
        if k not in PRETRAIN_KEYS:
            col.unknown_key(path, k, PRETRAIN_KEYS)
            ok = False
    pid = block.get("id")
    if pid is not None and _slug(col, pid, (*path, "id"), "pretrain id") is None:
        ok = False
    if "target" not in block:
        col.add(path, "missing required key 'target': the dataset the source is trained on first, e.g. "
                "target: {dataset: sklearn/digits, classes: [0, 1, 2, 3, 4]}")
        return None
    raw_target = block["target"]
    if isinstance(raw_target, dict) and "task" not in raw_target and modality is not None:
        task = _task_for(raw_target.get("dataset"), modality)
        raw_target = {**raw_target, "task": task} if task else raw_target
    target, _ = _component(col, raw_target, (*path, "target"), "target")
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
    train = _mapping(col, block.get("train", {}), (*path, "train"), "train") or {}
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
           "train": {**strat.train, **_set_fields(train_model)}, "seed": seed}
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


def _task_for(ref: Any, modality: str) -> str | None:
    """The one task of ``modality`` a target provides, when it has no default of its own (a
    pretrain's target need not say ``task:`` when its source tells)."""
    from harness.registry import TARGETS, TASKS

    if not isinstance(ref, str) or "/" not in ref or ref.split("/", 1)[0] not in TARGETS:
        return None
    entry = TARGETS.get(ref.split("/", 1)[0])
    if entry.default_task is not None:
        return None
    fits = [t for t in sorted(entry.tasks) if TASKS.get(t).modality == modality]
    return fits[0] if len(fits) == 1 else None


def _pretrain_leak(col: Collector, pretrain: dict[str, Any], target: ComponentSpec, entry: Any, path: Path_) -> None:
    """A source pretrained on its pair's own dataset trains on that dataset's training split only,
    which is the pair's training pool only when both partition it alike: the same split keys."""
    if pretrain["target"].get("dataset") != target.ref:
        return
    fields = entry.Params.model_fields
    keys = [k for k in ("split_seed", "val_fraction", "test_fraction") if k in fields]
    differ = [k for k in keys if pretrain["target"].get(k, fields[k].default) != target.params.get(k, fields[k].default)]
    if differ:
        col.add(path, f"the source is pretrained on the pair's own dataset ({target.ref}) with another "
                f"{', '.join(differ)}: its training split would then hold examples the pair validates or tests "
                "on (a split leak); use the pair's split")


def _other_domain(col: Collector, block: dict, path: Path_, key: str, task: str | None) -> dict[str, Any] | None:
    """``unlabeled:`` or ``eval_domain:`` naming another target block: checked as a target of
    the pair's task; the block the run will load (:mod:`harness.targets.domains`)."""
    from harness.targets.naming import SPLIT_KEY

    block = dict(block)
    given = SPLIT_KEY in block
    split = block.pop(SPLIT_KEY, "train")
    if key == "eval_domain" and given:
        col.add((*path, SPLIT_KEY), "eval_domain scores on the other target's val and test splits; "
                "`split:` applies to `unlabeled:` only")
        return None
    if split not in ("train", "val", "test"):
        col.add((*path, SPLIT_KEY), f"one of train, val, test (the other target's split to use unlabeled), got {split!r}")
        return None
    nested = [k for k in ("unlabeled", "eval_domain") if isinstance(block.get(k), dict)]
    if nested:
        col.add((*path, nested[0]), "another domain cannot itself name other targets")
        return None
    if task is not None:
        if block.get("task", task) != task:
            col.add((*path, "task"), f"the other domain is read for the pair's task '{task}', got {block['task']!r}")
            return None
        block["task"] = task
    spec, _ = _component(col, block, path, "target")
    if spec is None:
        return None
    out = spec.as_dict("dataset")
    out.pop("task", None)
    if split != "train":
        out[SPLIT_KEY] = split
    return out


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
    if allow_label and _slug(col, label, (*path, "label"), "label") is None:
        ok = False
    if not ok or p_model is None or t_model is None:
        return None
    return StrategySpec(name, label, _set_fields(p_model), _set_fields(t_model), search)


def _field_adapter(model: type[BaseModel], key: str):
    from typing import Annotated

    from pydantic import TypeAdapter

    info = model.model_fields[key]
    return TypeAdapter(Annotated[info.annotation, info])  # type: ignore[arg-type]  # a runtime-built type


def _check_value(col: Collector, owners: list[type[BaseModel]], key: str, value: Any, path: Path_) -> Any:
    """``value`` parsed as ``key`` of the first model in ``owners`` that accepts it (an issue when
    none does); returns the parsed value (``"1e-3"`` → 0.001) or None."""
    errors = []
    for model in owners:
        try:
            return _field_adapter(model, key).validate_python(value)
        except ValidationError as e:
            errors.append(e.errors()[0]["msg"])
    col.add(path, f"{errors[0]} (got {value!r})")
    return None


def parse_search(col: Collector, data: Any, path: Path_, owners: Mapping[str, type[BaseModel]]) -> SearchLayer:
    """A ``search:`` block: per key a non-empty list of candidate values (a grid), or for
    ``method: random|tpe`` a distribution ``{log_uniform|uniform|int: [low, high]}``; plus the
    options ``method``, ``trials`` and ``selection_seeds``. ``owners`` maps strategy names to their
    ``Params``: a key must be a training key or a parameter of one of them."""
    block = _mapping(col, data, path, "search")
    if block is None:
        return SearchLayer()
    space: dict[str, Any] = {}
    options: dict[str, Any] = {}
    params = {k for cls in owners.values() for k in cls.model_fields}
    for key, values in block.items():
        kpath = (*path, key)
        if key in SEARCH_OPTIONS:
            value = _search_option(col, key, values, kpath)
            if value is not None:
                options[key] = value
            continue
        if key not in TRAIN_KEYS and key not in params:
            col.unknown_key(path, key, sorted(TRAIN_KEYS | params | SEARCH_OPTIONS))
            continue
        if key in ("label", "search"):
            col.add(kpath, f"'{key}' cannot be searched")
            continue
        models: list[type[BaseModel]] = [TrainConfig] if key in TRAIN_KEYS else \
            [cls for cls in owners.values() if key in cls.model_fields]
        if isinstance(values, dict):
            space[key] = _distribution(col, models, key, values, kpath)
        elif isinstance(values, list) and values:
            parsed = [_check_value(col, models, key, v, (*kpath, i)) for i, v in enumerate(values)]
            if len({repr(v) for v in parsed}) != len(parsed):
                col.add(kpath, f"candidate values repeat: {values!r}")
            space[key] = parsed
        else:
            col.add(kpath, f"a search key takes a non-empty list of candidate values (a grid), or a distribution "
                    f"{{{'|'.join(DISTRIBUTIONS)}: [low, high]}} with method: random or tpe; got {values!r}")
    method = options.get("method", "grid")
    if method == "grid":
        for key, values in space.items():
            if isinstance(values, dict):
                col.add((*path, key), f"a distribution needs method: random or tpe (method is {method!r}); "
                        "a grid takes a list of values")
        size = 1
        for values in space.values():
            size *= len(values) if isinstance(values, list) else 1
        if size > MAX_GRID_POINTS:
            col.add(path, f"the grid has {size} points (more than {MAX_GRID_POINTS}); use method: random or tpe "
                    "with `trials:`")
    return SearchLayer(space, options)


def _search_option(col: Collector, key: str, value: Any, path: Path_) -> Any:
    if key == "method":
        if value not in SEARCH_METHODS:
            close = did_you_mean(str(value), SEARCH_METHODS)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            col.add(path, f"unknown search method {value!r}.{hint} Methods: {', '.join(SEARCH_METHODS)}.")
            return None
        return value
    if key == "trials":
        if type(value) is not int or not 1 <= value <= MAX_GRID_POINTS:
            col.add(path, f"must be a whole number from 1 to {MAX_GRID_POINTS}, got {value!r}")
            return None
        return value
    if not isinstance(value, list) or not value or not all(type(s) is int and s >= 0 for s in value) \
            or len(set(value)) != len(value):
        col.add(path, f"must be a non-empty list of distinct non-negative integers, got {value!r}")
        return None
    return tuple(value)


def _distribution(col: Collector, models: list[type[BaseModel]], key: str, spec: dict, path: Path_) -> Any:
    if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        col.add(path, f"a distribution is one of {{{'|'.join(DISTRIBUTIONS)}: [low, high]}}, got {spec!r}")
        return None
    kind, bounds = next(iter(spec.items()))
    if not isinstance(bounds, list) or len(bounds) != 2:
        col.add((*path, kind), f"takes [low, high], got {bounds!r}")
        return None
    low, high = (_check_value(col, models, key, b, (*path, kind, i)) for i, b in enumerate(bounds))
    if low is None or high is None:
        return None
    if not low < high:
        col.add((*path, kind), f"low must be below high, got {bounds!r}")
    elif kind == "log_uniform" and low <= 0:
        col.add((*path, kind), f"log_uniform needs low > 0, got {bounds!r}")
    elif kind == "int" and not (type(low) is int and type(high) is int):
        col.add((*path, kind), f"int takes whole numbers, got {bounds!r}")
    return {kind: [low, high]}


def _pop_search(col: Collector, data: dict, path: Path_, owners: Mapping[str, type[BaseModel]]) -> tuple[dict, SearchLayer]:
    """``data`` without its ``search:`` key, and that key parsed."""
    if "search" not in data:
        return data, SearchLayer()
    rest = {k: v for k, v in data.items() if k != "search"}
    return rest, parse_search(col, data["search"], (*path, "search"), owners)


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


def _pair(col: Collector, data: Any, path: Path_, labels: dict[str, StrategySpec],
          owners: Mapping[str, type[BaseModel]]) -> PairSpec | None:
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
    if source and target and "pretrain" in source.params and tgt_entry is not None:
        _pretrain_leak(col, source.params["pretrain"], target, tgt_entry, (*path, "source", "pretrain", "target"))
    train = _mapping(col, data.get("train", {}), (*path, "train"), "train") or {}
    train, search = _pop_search(col, train, (*path, "train"), owners)
    train = _set_fields(col.model(TrainConfig, train, (*path, "train")))
    only = None
    if "strategies" in data:
        raw = data["strategies"]
        if not isinstance(raw, list) or not raw or not all(isinstance(x, str) for x in raw):
            col.add((*path, "strategies"), f"must be a non-empty list of strategy labels, got {raw!r}")
        else:
            for i, label in enumerate(raw):
                if label not in labels:
                    close = did_you_mean(label, labels)
                    hint = f" Did you mean: {', '.join(close)}?" if close else ""
                    col.add((*path, "strategies", i), f"no strategy labelled '{label}' in this suite.{hint}")
            only = tuple(raw)
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
    return PairSpec(pid, source, target, train, overrides, search, only)


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
    raw_defaults_search = defaults.get("search")
    defaults = _set_fields(col.model(TrainConfig, {k: v for k, v in defaults.items() if k != "search"}, ("defaults",)))

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
        p = _pair(col, item, ("pairs", i), labels, owners)
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
                           search=search)
    # Strategy checks that need the whole suite (a teacher that exists, a depth that fits), for the
    # values each cell will run with: its own, and every point of its search.
    warnings: list[Issue] = []
    for i, s in enumerate(suite_spec.strategies):
        cls = STRATEGIES.get(s.name)
        path = ("strategies", i, s.name)
        for pair in suite_spec.pairs:
            if pair.strategies is not None and s.label not in pair.strategies:
                continue
            for msg in _cell_issues(cls, s, pair, suite_spec, warnings, col.file, col.line(path), path):
                col.add(path, f"pair '{pair.id}': {msg}")
    if col.issues:
        return None
    from dataclasses import replace

    return replace(suite_spec, warnings=tuple(warnings))


def _cell_issues(cls, strat: StrategySpec, pair: PairSpec, suite: SuiteSpec, warnings: list[Issue], file: str,
                 line: int, path: Path_) -> list[str]:
    """A cell's strategy checks, for its own values and for every point of its search (distribution
    searches: their bounds); its warnings go to ``warnings``."""
    from harness.plan import resolve_cell

    override = pair.overrides.get(strat.label)
    base = {**strat.params, **(override.params if override else {})}
    train = TrainConfig.model_validate({**suite.defaults, **pair.train, **strat.train,
                                        **(override.train if override else {})})
    cell = resolve_cell(suite, pair, strat)
    if cell.search is not None and cell.search.method == "grid":
        spread = [k for k, v in cell.search.space.items() if not isinstance(v, list)]
        if spread:  # a distribution from one layer under a grid method from another
            return [f"search: {', '.join(spread)} is a distribution, but the cell's search method is grid; "
                    "set method: random or tpe beside it"]
    if cell.search is not None and cell.search.sequential and len(cell.search.selection_seeds) > 1:
        return [f"search: method {cell.search.method} draws each point from the trials before it on one seed; "
                f"give it one selection seed (got {list(cell.search.selection_seeds)})"]
    points: list[dict[str, Any]] = [{}]
    if cell.search is not None and cell.search.method == "grid":
        points = cell.search.points()
    elif cell.search is not None:  # values drawn at run time: check each candidate, or each bound
        points = [{k: c} for k, v in cell.search.space.items()
                  for c in (v if isinstance(v, list) else next(iter(v.values())))]
    issues: list[str] = []
    for point in points:
        values = {**base, **{k: v for k, v in point.items() if k in cls.Params.model_fields}}
        cfg = train.model_copy(update={k: v for k, v in point.items() if k in TRAIN_KEYS})
        try:
            params = cls.Params.model_validate(values)
        except ValidationError as e:
            issues.append(f"search point {point}: {e.errors()[0]['msg']}")
            continue
        where = f" (search point {point})" if point else ""
        issues += [f"{m}{where}" for m in cls.check(params, pair, suite)]
        for m in cls.warnings(params, pair, suite, cfg):
            warnings.append(Issue(file, line, format_path(path), f"pair '{pair.id}': {m}{where}"))
    return list(dict.fromkeys(issues))


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
