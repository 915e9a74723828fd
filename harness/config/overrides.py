"""``--set KEY.PATH=VALUE``: a change to a suite's parsed YAML data before it is checked.

An override is applied to the plain values :func:`harness.config.load.read_yaml` returns, so the
suite's own checks validate it exactly as they validate the file; the issues they find at or
below an overridden key name the ``--set`` instead of a file line (:class:`~harness.config.
issues.Collector` ``origins``). The path is the one issues print (``pairs[0].train.lr``,
``strategies[2].full_finetune.lr``); the value is a YAML value read as YAML 1.2 reads numbers,
so ``1e-4`` is a float (PyYAML's YAML 1.1 would keep it a string).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from harness.config.issues import Collector, Path_, format_path

_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")
FLOAT_12 = re.compile(r"[-+]?(\.\d+|\d+(\.\d*)?)([eE][-+]?\d+)?")  # YAML 1.2's core-schema float


@dataclass(frozen=True)
class Override:
    """One ``--set``: its text as written, the key path and the parsed value."""

    text: str
    path: Path_
    value: Any

    @property
    def origin(self) -> str:
        """How an issue names it."""
        return f"--set {self.text}"


def parse_value(text: str) -> Any:
    """A ``--set`` value: a YAML value (``5``, ``true``, ``null``, ``[0, 1]``, ``{r: 8}``), with
    numbers read as YAML 1.2 reads them (``1e-4`` → 0.0001); text that is no YAML stays a string."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and FLOAT_12.fullmatch(value.strip()):
        return float(value)
    return value


def parse(text: str, col: Collector) -> Override | None:
    """``KEY.PATH=VALUE`` → an :class:`Override`, or None with an issue naming the ``--set``."""
    where = f"--set {text}"
    key, sep, raw = text.partition("=")
    steps: list[Any] = []
    pos = 0
    key = key.strip()
    while sep and pos < len(key):
        m = _STEP.match(key, pos)
        if m is None or (pos == 0 and key.startswith(".")):
            break
        steps.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if not sep or not key or pos < len(key) or not isinstance(steps[0], str):
        col.add_at(where, "", "expected KEY.PATH=VALUE, e.g. --set defaults.epochs=5 or --set pairs[0].train.lr=1e-4")
        return None
    value = parse_value(raw)
    if isinstance(value, float) and not math.isfinite(value):
        col.add_at(where, format_path(tuple(steps)), f"{raw!r} is not a finite number: no setting is infinite or NaN")
        return None
    return Override(text, tuple(steps), value)


def _describe(value: Any) -> str:
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else repr(value)


def apply(data: Any, overrides: Iterable[Override], col: Collector) -> Any:
    """``data`` with each override set in turn (a copy: the data read from the file is not
    changed). A missing mapping key is created (with the mappings above it); a list index must
    exist. A path that cannot be followed is an issue naming the ``--set``; its override is
    skipped and the others still apply, so every error is reported at once."""
    import copy

    data = copy.deepcopy(data) if data is not None else {}
    for ov in overrides:
        where = format_path(ov.path)
        node = data
        for depth, step in enumerate(ov.path):
            here = format_path(ov.path[:depth]) or "the suite"
            last = depth == len(ov.path) - 1
            if isinstance(step, int):
                if not isinstance(node, list):
                    col.add_at(ov.origin, where, f"{here} is {_describe(node)}, not a list: no [{step}] in it")
                    break
                if step >= len(node):
                    name = ov.path[depth - 1] if depth else "entry"
                    thing = str(name)[:-1] if str(name).endswith("s") else f"entry of {name}"
                    col.add_at(ov.origin, where, f"no {thing} {step} (the suite has {len(node)})")
                    break
            elif not isinstance(node, dict):
                hint = f"; use {here}[N]" if isinstance(node, list) else ""
                col.add_at(ov.origin, where, f"{here} is {_describe(node)}, not a mapping: no key '{step}' in it{hint}")
                break
            if last:
                node[step] = ov.value
                col.origins[ov.path] = ov.origin
            else:
                if isinstance(node, dict) and node.get(step) is None:
                    node[step] = {}  # a block the file leaves out (a pair's `train:`) is made
                node = node[step]
    return data
