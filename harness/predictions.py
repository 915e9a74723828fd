"""A run's per-example predictions, kept beside its record: ``<run_id>.preds.npz``.

One compact columnar file per evaluated run, written with numpy only (no pickle): per split, the
examples' content keys, gold and predicted label ids, and for token tasks the word-to-sentence
index and the sentences' gold tags flattened with offsets. The record names the file and its
SHA-256 (``record.predictions``), so ``harness rescore`` recomputes any registered metric from it
without training, and refuses a file whose bytes changed.

Arrays, each named ``<split>/<column>``:

- ``keys`` (str, one per example; a sentence for token tasks): content keys (``targets/base.py``)
- ``y_true``, ``y_pred`` (int32): label ids per example, or per word (first sub-word) with the
  ignore index kept out, as :class:`harness.metrics.Predictions` holds them
- ``seq_index`` (int32, token tasks): the sentence each word belongs to
- ``gold_tags`` (int32) + ``gold_offsets`` (int64, sentences + 1) (token tasks): every word's gold
  tag of every sentence (truncated words included), as ids into ``tag_names``

and ``label_names`` / ``tag_names`` (str) shared by the splits.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.metrics import Predictions, compute

SUFFIX = ".preds.npz"
FORMAT_VERSION = 1


class DamagedPredictions(HarnessError):
    """A predictions file is missing, does not match the checksum its record names, or cannot be read."""


@dataclass(frozen=True)
class SplitPredictions:
    """One split's predictions and the content key of each example (sentence, for token tasks)."""

    keys: np.ndarray
    predictions: Predictions


def file_name(run_id: str) -> str:
    return f"{run_id}{SUFFIX}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode(splits: Mapping[str, SplitPredictions]) -> bytes:
    """The ``.preds.npz`` bytes of ``splits`` (split name → predictions)."""
    arrays: dict[str, np.ndarray] = {"format_version": np.array(FORMAT_VERSION)}
    tags: dict[str, int] = {}
    label_names: Sequence[str] = ()
    for name, split in splits.items():
        p = split.predictions
        label_names = p.label_names
        arrays[f"{name}/keys"] = np.asarray([str(k) for k in split.keys], dtype=str)
        arrays[f"{name}/y_true"] = np.asarray(p.y_true, dtype=np.int32)
        arrays[f"{name}/y_pred"] = np.asarray(p.y_pred, dtype=np.int32)
        if p.seq_index is not None and p.sequences is not None:
            arrays[f"{name}/seq_index"] = np.asarray(p.seq_index, dtype=np.int32)
            flat = [tags.setdefault(t, len(tags)) for seq in p.sequences for t in seq]
            arrays[f"{name}/gold_tags"] = np.asarray(flat, dtype=np.int32)
            arrays[f"{name}/gold_offsets"] = np.cumsum([0] + [len(s) for s in p.sequences], dtype=np.int64)
    arrays["label_names"] = np.asarray(list(label_names), dtype=str)
    arrays["tag_names"] = np.asarray(list(tags), dtype=str)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def decode(data: bytes) -> dict[str, SplitPredictions]:
    """The splits' predictions from ``.preds.npz`` bytes (numpy only; pickled objects refused)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - any unreadable file is one kind of damage
        raise DamagedPredictions(f"not a predictions file ({type(e).__name__}: {e})") from e
    label_names = [str(x) for x in arrays.get("label_names", [])]
    tag_names = [str(x) for x in arrays.get("tag_names", [])]
    out: dict[str, SplitPredictions] = {}
    for split in sorted({k.split("/", 1)[0] for k in arrays if "/" in k}):
        seq_index = arrays.get(f"{split}/seq_index")
        sequences = None
        if seq_index is not None:
            flat, offsets = arrays[f"{split}/gold_tags"], arrays[f"{split}/gold_offsets"]
            sequences = [[tag_names[t] for t in flat[a:b]] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
        p = Predictions(arrays[f"{split}/y_true"].astype(np.int64), arrays[f"{split}/y_pred"].astype(np.int64),
                        label_names, None if seq_index is None else seq_index.astype(np.int64), sequences)
        out[split] = SplitPredictions(arrays[f"{split}/keys"], p)
    return out


def collect(preds: Mapping[str, Predictions], keys: Mapping[str, np.ndarray]) -> dict[str, SplitPredictions]:
    """The splits of ``preds`` whose content keys line up with their examples (one key per example,
    per sentence for token tasks); a split without such keys cannot be paired, and is left out."""
    out: dict[str, SplitPredictions] = {}
    for name, p in preds.items():
        k = keys.get(name)
        if k is None:
            continue
        units = len(p.sequences) if p.sequences is not None and p.seq_index is not None else len(p.y_true)
        if len(k) == units:
            out[name] = SplitPredictions(np.asarray(k), p)
    return out


def reference(data: bytes, run_id: str) -> dict[str, Any]:
    """What a record says of its predictions file: its name (beside the record) and checksum."""
    return {"file": file_name(run_id), "sha256": sha256(data)}


def load(directory: str | Path, ref: Mapping[str, Any] | None) -> dict[str, SplitPredictions]:
    """The predictions a record names (``record.predictions``) in ``directory``, checked against
    the record's checksum; :class:`DamagedPredictions` when missing, changed or unreadable."""
    if not ref or not ref.get("file"):
        raise DamagedPredictions("the record names no predictions file")
    name = str(ref["file"])
    if "/" in name or name.startswith("."):
        raise DamagedPredictions(f"{name}: not a file name beside the record")
    path = Path(directory) / name
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DamagedPredictions(f"{path}: missing ({e.strerror})") from e
    if sha256(data) != ref.get("sha256"):
        raise DamagedPredictions(f"{path}: its SHA-256 is not the one its record names (changed since written)")
    try:
        return decode(data)
    except DamagedPredictions as e:
        raise DamagedPredictions(f"{path}: {e}") from e


@dataclass(frozen=True)
class Rescored:
    """One metric value recomputed from a run's kept predictions, beside what its record says."""

    run_id: str
    suite: str
    pair: str
    label: str
    seed: int
    split: str
    metric: str  # a scalar a metric returns (seqeval gives precision, recall and f1)
    value: float
    recorded: float | None  # the record's value of that scalar on that split; None where it has none


@dataclass
class Rescoring:
    """What :func:`rescore` found: the values, the records it could not rescore (and why), the records written."""

    rows: list[Rescored]
    skipped: list[str]
    written: list[Path]


def recorded_value(metrics: Mapping[str, Any], split: str, name: str) -> float | None:
    """A record's value of scalar ``name`` on ``split`` (test metrics are top level, val under ``val``)."""
    where = metrics if split == "test" else metrics.get(split) or {}
    value = where.get(name) if isinstance(where, Mapping) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def rescore(results: str | Path, suite: str | None = None, metrics: Sequence[str] = (), split: str = "test",
            write: bool = False) -> Rescoring:
    """Recompute ``metrics`` (any registered: :data:`harness.registry.METRICS`; default: each
    record's task's own) on ``split`` from the predictions kept beside every ok record under
    ``results`` (``suite``: that suite only), without training. A record without predictions or
    whose file is missing, changed or unreadable is skipped and named in ``skipped``. ``write``
    adds the values to each record's ``predictions.rescored`` block (``{split: {metric: value}}``),
    rewritten atomically under the results lock."""
    from harness.records import CorruptRecord, read_record, record_files, results_lock, write_record
    from harness.registry import METRICS, TASKS

    for name in metrics:
        METRICS.get(name)  # an unknown name: did-you-mean, before anything is read
    out = Rescoring([], [], [])
    for path in record_files(results):
        try:
            record = read_record(path)
        except CorruptRecord as e:
            out.skipped.append(str(e))
            continue
        if record.status != "ok" or (suite is not None and record.suite != suite):
            continue
        directory = Path(path).parent
        try:
            kept = load(directory, record.predictions)
        except DamagedPredictions as e:
            out.skipped.append(f"{path}: {e}")
            continue
        if split not in kept:
            out.skipped.append(f"{path}: its predictions hold no {split!r} split (it has {', '.join(kept) or 'none'})")
            continue
        names = list(metrics) or (list(TASKS.get(record.task).metrics) if record.task in TASKS else [])
        values: dict[str, float] = {}
        for name in names:
            try:
                got = compute([name], kept[split].predictions)
            except (AssertionError, ValueError, IndexError) as e:  # a token metric on image predictions
                out.skipped.append(f"{record.run_id}: {name} does not apply to its predictions ({e})")
                continue
            values.update((k, float(v)) for k, v in got.items() if k != "per_label")
        out.rows.extend(Rescored(record.run_id, record.suite, record.pair, record.label, record.seed, split, k, v,
                                 recorded_value(record.metrics, split, k)) for k, v in values.items())
        if write:
            with results_lock(directory, wait=True):
                fresh = read_record(path)  # as it is now, under the lock
                ref = dict(fresh.predictions or {})
                ref["rescored"] = {**ref.get("rescored", {}), split: {**ref.get("rescored", {}).get(split, {}),
                                                                      **values}}
                out.written.append(write_record(directory, fresh.model_copy(update={"predictions": ref})))
    return out
