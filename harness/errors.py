"""Error types shared by the whole harness; each carries the exit code the CLI returns."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class HarnessError(Exception):
    """An error the CLI reports in one line (no traceback)."""

    exit_code = 1


@dataclass(frozen=True)
class Issue:
    """One problem in a suite file, located by file, line and key path; or, for a value the command
    line set, by its ``origin`` (``--set KEY.PATH=VALUE``) in place of a line."""

    file: str
    line: int
    path: str
    message: str
    origin: str = ""

    def __str__(self) -> str:
        where = f"{self.file}: {self.origin}" if self.origin else f"{self.file}:{self.line}"
        return f"{where}: {self.path or '<root>'}: {self.message}"


class ConfigError(HarnessError):
    """A suite file is not valid; holds every issue found, not just the first."""

    exit_code = 2

    def __init__(self, issues: list[Issue]):
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, i.path))
        super().__init__("\n".join(str(i) for i in self.issues))


class UnknownNameError(HarnessError, KeyError):
    """A name is not in a registry; the message suggests the closest names."""

    exit_code = 2

    def __init__(self, kind: str, name: str, available: Iterable[str]):
        self.kind, self.name, self.available = kind, name, sorted(available)
        super().__init__(unknown_message(kind, name, self.available))

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


def did_you_mean(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The closest candidates to ``name`` (case-insensitive), best first."""
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    return [lowered[h] for h in hits]


def unknown_message(kind: str, name: str, available: Iterable[str]) -> str:
    available = sorted(available)
    msg = f"Unknown {kind} '{name}'."
    close = did_you_mean(name, available)
    if close:
        msg += f" Did you mean: {', '.join(close)}?"
    shown = ", ".join(available[:20]) + (", …" if len(available) > 20 else "")
    return msg + f" Available: {shown}."


class RunFailure(HarnessError):
    """A run could not finish; becomes a ``failed`` record, never aborts the suite."""


class Diverged(RunFailure):
    """The loss became NaN or infinite."""


class RunTimeout(RunFailure):
    """The run exceeded its ``timeout_s`` budget."""


class LockedError(HarnessError):
    """Another ``harness run`` holds the results directory."""

    exit_code = 3
