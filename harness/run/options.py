"""How the driver asks for a run to be executed (where its cache, results and data live): a
plain dataclass, so that executors and the driver can name it without importing torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ExecOptions:
    cache_dir: Path | None = None
    show_progress: bool = False
    results_dir: Path | None = None
    data_dir: Path | None = None  # the data root (`--data-dir`); None: $HARNESS_DATA_DIR or the default
    record_hostname: bool = False  # records are shared: by default they carry a salted hash of the hostname
