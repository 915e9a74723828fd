"""A suite file read into plain values, bounded: YAML with the safe constructor only (``!!python/...``
tags are rejected), and a file built to exhaust time or memory (size, nesting, alias expansion,
enormous scalars, non-finite numbers) stopped with an issue before any value is built. Records the
line every key path starts on, for the issues of every later check. Nothing here imports torch.

Turning the values into a :class:`~harness.config.schema.SuiteSpec` is :mod:`harness.suite`'s job.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from harness.config.issues import Collector, Path_
from harness.errors import Issue

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

