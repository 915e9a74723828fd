"""Loading a target: the one place a target block becomes checked data.

:func:`load_target` resolves the block through the registry, loads the other targets it names for
another domain (:mod:`harness.targets.domains`) and passes the result through :func:`audit`, the
leak check every target's data gets, whatever the target returns. It sits above both the split
types (:mod:`harness.targets.base`) and the domains, which need each other's names only this way.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.registry import TARGETS
from harness.targets.base import SPLITS, LeakError, TargetData, fingerprint
from harness.targets.domains import crossing, with_domains


def load_target(target: dict[str, Any], backbone, task: str | None = None) -> TargetData:
    """Load a target block (``{dataset: ns/name, task: …, **params}``) through its registry entry
    and check its splits (:func:`audit`). The one place a target is loaded."""
    ref = target["dataset"]
    ns, name = ref.split("/", 1)
    entry = TARGETS.get(ns)
    cross = crossing(target)  # other targets standing for the target domain: loaded after this one
    params = {k: v for k, v in target.items() if k not in ("dataset", "task", *cross)}
    task = task or target.get("task") or entry.default_task
    data = entry.load(name, params, task, backbone)
    if cross:
        data = with_domains(data, target, ref, lambda block: load_target({**block, "task": task}, backbone, task))
    return audit(data, ref)


def audit(data: TargetData, ref: str) -> TargetData:
    """Check that the splits are disjoint by content; return ``data`` with the keys of every split
    and, in ``split_info``, the splits' fingerprints and the duplicates counted across pools.

    Every target's data passes through here (:func:`load_target`), whatever the target returns.
    """
    missing = [k for k in SPLITS if k not in data.splits]
    if missing:
        raise HarnessError(f"{ref}: the target returned no {', '.join(missing)} split")
    keys = {}
    for k, split in data.splits.items():
        given = data.keys.get(k)
        keys[k] = np.asarray(given if given is not None else split.example_keys(), dtype=object)
        if len(keys[k]) != len(split):
            raise HarnessError(f"{ref}: {len(keys[k])} content keys for the {len(split)} examples of split '{k}'")
    origins = {k: data.origins.get(k, "pool") for k in data.splits}
    duplicates = {}
    for a, b in itertools.combinations(SPLITS, 2):
        shared = set(keys[a]).intersection(keys[b])
        if not shared:
            continue
        if origins[a] == origins[b]:
            raise LeakError(
                f"{ref}: {len(shared)} example(s) of the '{b}' split are also in '{a}' (compared by content), "
                f"though both come from '{origins[a]}': {b} would not be held out. A target carves splits with "
                "harness.targets.base.split_indices(..., keys=...), which keeps identical examples together.")
        duplicates[f"{a}~{b}"] = len(shared)
    info = {**data.split_info, "origins": origins, "fingerprint": {k: fingerprint(v) for k, v in keys.items()},
            "duplicates_across_splits": duplicates}
    return replace(data, keys=keys, origins=origins, split_info=info)
