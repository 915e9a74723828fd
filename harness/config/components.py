"""A suite's components: a ``source:`` or ``target:`` block checked against its registry entry
(namespace, name, task, params), and the other domains a target names (``unlabeled:``,
``eval_domain:``). :func:`parse_component` is the entry for checks outside a suite's pairs (a
distillation teacher, a multitask task)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.config.issues import Collector, Path_, set_fields
from harness.config.schema import SPLIT_KEY, ComponentSpec
from harness.errors import UnknownNameError

# (collector, the block, its path, the source's modality or None) → the block normalised, or None
PretrainParser = Callable[[Collector, Any, Path_, str | None], dict[str, Any] | None]


def parse_component(data: Any, where: Path_, kind: str) -> tuple[ComponentSpec | None, list[str]]:
    """A ``source`` or ``target`` block outside a suite's pairs, checked as a pair's would be (no
    ``pretrain:``): the spec (None when it cannot be built) and every issue found, in order, as
    ``"key.path: message"`` (``where`` is the key path the block sits at)."""
    col = Collector("")
    spec, _ = component(col, data, where, kind)
    return spec, [f"{i.path}: {i.message}" for i in col.issues]


def component(col: Collector, data: Any, path: Path_, kind: str,
              pretrain: PretrainParser | None = None) -> tuple[ComponentSpec | None, Any]:
    """Check a ``source:`` or ``target:`` block against its registry entry; the spec (None when it
    cannot be built) and the entry (None when the name does not resolve). A source's ``pretrain:``
    block goes to ``pretrain`` (the suite assembly's parser: a pretrain holds a strategy and its
    search); without one it is an issue."""
    from harness.registry import SOURCES, TARGETS, TASKS

    key = "model" if kind == "source" else "dataset"
    registry = SOURCES if kind == "source" else TARGETS
    data = col.mapping(data, path, kind)
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
        if pretrain is None:  # never into the spec unchecked
            params.pop("pretrain")
            col.add((*path, "pretrain"), "a pretrain: block is read only in a pair's source")
        else:
            block = pretrain(col, params.pop("pretrain"), (*path, "pretrain"), entry.modality(name) if name_ok else None)
            if block is not None:
                cross["pretrain"] = block
    if kind == "target":
        for k in ("unlabeled", "eval_domain"):
            if isinstance(params.get(k), dict):
                other = other_domain(col, params.pop(k), (*path, k), k, task)
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
    return ComponentSpec(ref, {**set_fields(model), **cross}, task), entry


def task_for(ref: Any, modality: str) -> str | None:
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


def pretrain_leak(col: Collector, pretrain: dict[str, Any], target: ComponentSpec, entry: Any, path: Path_) -> None:
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


def other_domain(col: Collector, block: dict, path: Path_, key: str, task: str | None) -> dict[str, Any] | None:
    """``unlabeled:`` or ``eval_domain:`` naming another target block: checked as a target of
    the pair's task; the block the run will load (:mod:`harness.targets.domains`)."""
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
    spec, _ = component(col, block, path, "target")
    if spec is None:
        return None
    out = spec.as_dict("dataset")
    out.pop("task", None)
    if split != "train":
        out[SPLIT_KEY] = split
    return out

