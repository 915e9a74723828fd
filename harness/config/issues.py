"""Where a suite file's issues are gathered: each with its file, line and dotted key path.

Every checker of a suite (the YAML reader, components, search blocks, the assembly) adds to one
:class:`Collector`, so that every issue is reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.config.schema import SLUG
from harness.errors import Issue, did_you_mean

Path_ = tuple[Any, ...]


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
        # key paths a `--set` wrote (harness.config.overrides): issues at or below one name it, not a line
        self.origins: dict[Path_, str] = {}

    def line(self, path: Path_) -> int:
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return 1

    def add(self, path: Path_, message: str) -> None:
        for n in range(len(path), 0, -1):
            if path[:n] in self.origins:
                self.add_at(self.origins[path[:n]], format_path(path), message)
                return
        self.issues.append(Issue(self.file, self.line(path), format_path(path), message))

    def add_at(self, origin: str, path: str, message: str) -> None:
        """An issue of a value that came from ``origin`` (a ``--set``), not from a line of the file."""
        self.issues.append(Issue(self.file, 0, path, message, origin))

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


    def mapping(self, data: Any, path: Path_, what: str) -> dict | None:
        """``data`` as a mapping with string keys (an issue per other key), or None with an issue."""
        if not isinstance(data, dict):
            self.add(path, f"{what} must be a mapping, got {type(data).__name__}")
            return None
        bad = [k for k in data if not isinstance(k, str)]
        for k in bad:
            self.add((*path, k), f"keys must be strings, got {type(k).__name__} {k!r}")
        return {k: v for k, v in data.items() if isinstance(k, str)}

    def slug(self, value: Any, path: Path_, what: str) -> str | None:
        """``value`` if it can name a file (:data:`SLUG`), else None with an issue."""
        if not isinstance(value, str) or not re.match(SLUG, value):
            self.add(path, f"{what} must match {SLUG} (letters, digits, '_', '-'; it names files), got {value!r}")
            return None
        return value


def set_fields(model: BaseModel | None) -> dict[str, Any]:
    """The keys the file set, parsed (``"1e-3"`` → 0.001), defaults left out."""
    return {} if model is None else model.model_dump(mode="json", exclude_unset=True)


def model_issues(cls: type[BaseModel], data: Any, where: Path_) -> list[str]:
    """What a suite check says of ``data`` as ``cls`` (a training block, a strategy's params), as
    ``"key.path: message"`` lines: for checks outside a suite file's own keys (a strategy's)."""
    col = Collector("")
    col.model(cls, data, where)
    return [f"{i.path}: {i.message}" for i in col.issues]
