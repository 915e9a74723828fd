"""RunRecord and its atomic JSON I/O; the results-directory lock.

A record is written to a temp file in the same directory, fsynced, renamed over the final
name and the directory fsynced: a reader sees either no record or a whole one, whatever
moment the process dies at.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from harness.errors import HarnessError, LockedError

SCHEMA_VERSION = 2  # 2: role, search, budget, data (fingerprint, evaluation domain)
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
TMP_SUFFIX = ".tmp"  # atomic_write_bytes' temp files: ".<name>.<random>.tmp", never read as records


class Machine(BaseModel):
    """The part of a record's ``env`` that says which machine made it: what the report's header
    names and its load warning reads. Every field may be absent (older records: unknown) and is
    kept as recorded; the rest of ``env`` (packages, variables) is not built into objects."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    cpu_model: Any = None
    cpu_capability: Any = None  # the vector instruction set torch's CPU kernels used (AVX512, AVX2, …)
    cpu_count: Any = None  # logical CPUs of the machine
    torch_threads: Any = None
    device: Any = None  # "cpu", "cuda:0", …
    device_name: Any = None  # a GPU's name (on CPU: the platform's processor name)
    load_start: Any = None  # os.getloadavg() (1, 5, 15 minutes) when the run started; absent in older records
    load_end: Any = None  # … and when it ended


class RecordSummary(BaseModel):
    """A record less its provenance: what ``harness report`` reads.

    It parses each file whole (malformed JSON is a corrupt record as before) but builds no Python
    objects for ``config``, ``split`` and ``env``, two thirds of a record: half the time of a
    10,000-record report's scan, and less for the garbage collector to walk. The regression gate
    and resuming read whole records (:class:`RunRecord`).
    """

    schema_version: int = SCHEMA_VERSION
    run_id: str
    suite: str
    pair: str
    strategy: str
    label: str
    seed: int
    smoke: bool = False
    role: Literal["final", "trial", "aux"] = "final"  # only finals enter the leaderboard
    status: Literal["ok", "failed", "timeout"]
    error: dict[str, Any] | None = None
    task: str | None = None
    primary_metric: str | None = None
    metrics: dict[str, Any] = {}
    curve: list[dict[str, Any]] = []
    cost: dict[str, Any] = {}
    budget: dict[str, Any] = {}  # epochs, steps, examples seen, optimizer, lr, precision; the pair's reference
    search: dict[str, Any] | None = None  # a final: the space, the trials' scores, the chosen point; a trial: its point
    data: dict[str, Any] = {}  # fingerprint of the examples used, evaluation domain, duplicates across splits
    started_at: str
    finished_at: str
    # when a record that took over another's computation (a final choosing a trial's point, a run
    # whose computation is on record) was written; its started/finished_at are the computation's
    recorded_at: str | None = None
    # the run's per-example predictions beside the record (``harness/predictions.py``): ``{"file":
    # "<run_id>.preds.npz", "sha256": …}``; None for a run that evaluated nothing and older records
    predictions: dict[str, Any] | None = None
    # ``env``'s machine fields, read from the same JSON key and never written back (``env`` is the
    # record's): a malformed ``env`` (not an object) is kept as it is and reads as an unknown machine
    machine_env: Machine | Any = Field(default_factory=Machine, validation_alias="env", exclude=True, repr=False)

    @property
    def machine(self) -> Machine:
        """The machine that made the record (fields ``None`` where the record does not say)."""
        return self.machine_env if isinstance(self.machine_env, Machine) else Machine()

    @property
    def written_at(self) -> str:
        """When this record was made: what "the latest record" means."""
        return self.recorded_at or self.finished_at


class RunRecord(RecordSummary):
    """One run's self-describing result: the summary, then where it came from (a record's JSON
    lists the fields in this order, results first)."""

    config: dict[str, Any]
    split: dict[str, Any] = {}
    env: dict[str, Any] = {}
    # the bytes of the file ``predictions`` names, from the run to the driver that writes them (never
    # in the JSON; pickled with the record by the pool and Ray executors)
    _prediction_bytes: bytes | None = PrivateAttr(default=None)

    def with_prediction_bytes(self, data: bytes | None) -> RunRecord:
        """This record carrying ``data``, the file its ``predictions`` names, to :func:`write_record`."""
        self._prediction_bytes = data
        return self


Record = TypeVar("Record", bound=RecordSummary)


def now(timespec: str = "seconds") -> str:
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


def suite_dir(results: str | Path, suite: str, smoke: bool = False) -> Path:
    """``<results>/<suite>``; refused when it leads outside ``results`` (a symlink planted there):
    records are written only inside the results directory the user named."""
    name = f"{suite}-smoke" if smoke else suite
    if not _SAFE_ID.match(name) or ".." in name:
        raise HarnessError(f"unsafe suite name {name!r}")
    path = Path(results) / name
    if path.is_symlink() or (path.exists() and path.resolve().parent != Path(results).resolve()):
        raise HarnessError(f"{path} is a symlink or leads outside the results directory {Path(results).resolve()}: "
                           "the harness writes records only inside it; remove the link or name another --results")
    return path


def record_path(directory: Path, run_id: str) -> Path:
    if not _SAFE_ID.match(run_id) or ".." in run_id:
        raise HarnessError(f"unsafe run_id {run_id!r}")
    return directory / f"{run_id}.json"


def _umask() -> int:
    """The process's umask, read without setting it where the OS allows (``os.umask`` can only
    read it by changing it, for every thread of the process, for a moment)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Called by `atomic_write_bytes` with half of a file's bytes written and synced (the path it will
# have): the crash and concurrency tests set it to hold a writer there, to be killed mid-write. The
# harness itself never sets it.
mid_write_hook: Callable[[Path], None] | None = None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never seen half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared like any file written with open()
    hook = mid_write_hook
    try:
        with os.fdopen(fd, "wb") as f:
            if hook is not None:  # a test's: half the bytes on disk, then whatever it does (a window to be killed in)
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                hook(path)
                data = data[len(data) // 2:]
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def sweep_temp(directory: Path) -> list[Path]:
    """Delete temp files a killed writer left in ``directory``; only call it holding the results lock."""
    removed = []
    for tmp in directory.glob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def write_record(directory: Path, record: RunRecord) -> Path:
    """Write ``record`` (and first the predictions file it carries: a record never names a missing file)."""
    path = record_path(directory, record.run_id)
    data = record._prediction_bytes
    if data is not None and record.predictions:
        name = str(record.predictions["file"])
        if not _SAFE_ID.match(name) or ".." in name:
            raise HarnessError(f"unsafe predictions file name {name!r}")
        atomic_write_bytes(directory / name, data)
    atomic_write_bytes(path, (record.model_dump_json(indent=2) + "\n").encode())
    return path


class CorruptRecord(HarnessError):
    pass


@overload
def read_record(path: str | Path) -> RunRecord: ...
@overload
def read_record(path: str | Path, model: type[Record]) -> Record: ...
def read_record(path: str | Path, model: type[RecordSummary] = RunRecord) -> RecordSummary:
    """The record at ``path``, as ``model`` (:class:`RunRecord`, or :class:`RecordSummary` for a
    reader that needs no provenance)."""
    try:
        with open(path, "rb") as f:
            # pydantic's own JSON parser: a third of the time of json.loads + model_validate
            return model.model_validate_json(f.read())
    except ValidationError as e:  # also malformed JSON and bytes that are not UTF-8
        raise CorruptRecord(f"{path}: not a valid run record ({e.__class__.__name__})") from e


@overload
def scan(results: str | Path) -> tuple[list[RunRecord], list[Path]]: ...
@overload
def scan(results: str | Path, model: type[Record]) -> tuple[list[Record], list[Path]]: ...
def scan(results: str | Path, model: type[RecordSummary] = RunRecord) -> tuple[list[Any], list[Path]]:
    """Every record under ``results`` (recursively, temp files and dot-directories ignored) in
    path order, as ``model``, and the corrupt ones."""
    records: list[RecordSummary] = []
    corrupt: list[Path] = []
    with _no_gc():
        for path in record_files(results):
            try:
                records.append(read_record(path, model))
            except CorruptRecord:
                corrupt.append(Path(path))
    return records, corrupt


def record_files(results: str | Path) -> list[str]:
    """The paths of every record file under ``results`` (recursively, temp files and dot-directories
    ignored), in path order: what :func:`scan` reads."""
    found: list[tuple[tuple[str, ...], str]] = []
    root = os.fspath(results)
    # os.walk on strings, not pathlib: a report over 10,000 records spent a third of its scan
    # building, comparing and relativising Path objects
    for here, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # caches, temp dirs
        rel = os.path.relpath(here, root)
        parts = () if rel == "." else tuple(rel.split(os.sep))
        found.extend((parts + (name,), os.path.join(here, name)) for name in files
                     if name.endswith(".json") and not name.startswith("."))
    return [path for _, path in sorted(found)]


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector paused while records pile up: they hold no cycles, and every
    collection it started walked all the records read so far (a quarter of a 10,000-record scan)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def latest(records: Iterable[Record]) -> dict[str, Record]:
    """The latest record of each run_id (by :attr:`RecordSummary.written_at`): a run written twice counts once."""
    out: dict[str, Record] = {}
    for r in records:
        if r.run_id not in out or r.written_at >= out[r.run_id].written_at:
            out[r.run_id] = r
    return out


def completed_ids(directory: Path) -> set[str]:
    """run_ids that already have an ok record (a rerun skips them)."""
    if not directory.exists():
        return set()
    return {r.run_id for r in scan(directory)[0] if r.status == "ok"}


@contextlib.contextmanager
def results_lock(directory: Path, wait: bool = False) -> Iterator[None]:
    """One ``harness run`` per results directory at a time (an advisory ``flock``)."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockedError(
                f"{directory} is in use by another `harness run`; wait for it to finish "
                "or pass --wait to queue behind it") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
