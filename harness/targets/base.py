"""The target contract and the in-memory splits the training loop batches from."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from harness.config.schema import Params
from harness.digest import content_key, digest_bytes
from harness.errors import HarnessError, did_you_mean

if TYPE_CHECKING:
    import torch

SPLITS = ("train", "val", "test")


class Target:
    """A namespace of datasets. Subclasses set ``Params``, ``tasks`` and implement ``load``."""

    Params: ClassVar[type[Params]] = Params
    tasks: ClassVar[frozenset[str]] = frozenset()
    default_task: ClassVar[str | None] = None
    names: ClassVar[tuple[str, ...] | None] = None

    name_hint: ClassVar[str] = ""  # open namespaces: what goes after "<namespace>/", for the empty-name error

    def check_name(self, name: str) -> None:
        if self.names is not None and name not in self.names:
            close = did_you_mean(name, self.names)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown dataset '{name}'.{hint} Available: {', '.join(self.names)}.")
        if not name.strip():
            raise ValueError(f"a dataset is needed after the namespace: {self.name_hint}")

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        raise NotImplementedError


class Split:
    """One split held in memory; yields batches as dicts of tensors."""

    sequences: Sequence[Sequence[str]] | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def select(self, indices: np.ndarray) -> Split:
        raise NotImplementedError

    def batches(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
                group_by_length: bool = False) -> Iterator[dict]:
        """Collated batches; ``group_by_length`` only means something to variable-length splits."""
        raise NotImplementedError

    def sample(self, n: int | None, seed: int) -> Split:
        """A fixed random subset of ``n`` examples (all of them when ``n`` is None)."""
        idx = sample_indices(len(self), n, seed)
        return self if idx is None else self.select(idx)

    def example_keys(self) -> np.ndarray:
        """A digest of each example's model input, in order: what the leak check compares when the
        target gave no keys of its own (targets should: keys of the raw content)."""
        raise NotImplementedError(f"{type(self).__name__} cannot digest its examples; the target must give keys")


def sample_indices(size: int, n: int | None, seed: int) -> np.ndarray | None:
    """The sorted indices :meth:`Split.sample` keeps (None: all of them)."""
    if n is None or n >= size:
        return None
    return np.sort(np.random.default_rng(seed).permutation(size)[:n])


def keys_of_rows(*tensors: torch.Tensor) -> np.ndarray:
    """One digest per row of ``tensors`` (rows taken together)."""
    n = len(tensors[0])
    return np.asarray([content_key(*(t[i] for t in tensors)) for i in range(n)], dtype=object)


NOT_INPUT = frozenset({"labels", "index", "teacher_logits", "teacher_mask"})


class TensorSplit(Split):
    """Fixed-shape examples (images, cached features): one tensor per field, first dim = N."""

    def __init__(self, tensors: dict[str, torch.Tensor], sequences: Sequence[Sequence[str]] | None = None):
        n = {len(t) for t in tensors.values()}
        assert len(n) == 1, f"fields differ in length: { {k: len(t) for k, t in tensors.items()} }"
        self.tensors = tensors
        self.sequences = sequences

    def __len__(self):
        return len(next(iter(self.tensors.values())))

    def select(self, indices):
        import torch

        idx = torch.as_tensor(indices, dtype=torch.long)
        # Per-word rows (token features) keep their sentence ``index``, so the sentences stay as they are.
        return TensorSplit({k: t[idx] for k, t in self.tensors.items()}, self.sequences)

    def example_keys(self):
        inputs = [t for k, t in sorted(self.tensors.items()) if k not in NOT_INPUT]
        return keys_of_rows(*inputs)

    def batches(self, batch_size, shuffle=False, generator=None, group_by_length=False):
        import torch

        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            yield {k: t[idx] for k, t in self.tensors.items()}


class TokenSplit(Split):
    """Variable-length token sequences, padded per batch; batches grouped by length."""

    mega_batches = 50  # group_by_length sorts within this many batches (as the Trainer's group_by_length)

    def __init__(self, input_ids: list[list[int]], labels: list[list[int]], sequences: Sequence[Sequence[str]],
                 pad_id: int, doc_labels: list[int] | None = None):
        self.input_ids, self.labels, self.sequences, self.pad_id = input_ids, labels, sequences, pad_id
        self.doc_labels = doc_labels

    def __len__(self):
        return len(self.input_ids)

    def select(self, indices):
        idx = [int(i) for i in indices]
        return TokenSplit([self.input_ids[i] for i in idx], [self.labels[i] for i in idx],
                          [self.sequences[i] for i in idx], self.pad_id,
                          None if self.doc_labels is None else [self.doc_labels[i] for i in idx])

    def example_keys(self):
        return np.asarray([content_key(np.asarray(ids, dtype=np.int64)) for ids in self.input_ids], dtype=object)

    def collate(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        import torch

        width = max(len(self.input_ids[i]) for i in idx)
        ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        labels = torch.full((len(idx), width), -100, dtype=torch.long)
        for row, i in enumerate(idx):
            n = len(self.input_ids[i])
            ids[row, :n] = torch.tensor(self.input_ids[i])
            mask[row, :n] = 1
            labels[row, :n] = torch.tensor(self.labels[i])
        batch = {"input_ids": ids, "attention_mask": mask, "labels": labels, "index": torch.tensor(list(idx))}
        if self.doc_labels is not None:
            batch["labels"] = torch.tensor([self.doc_labels[i] for i in idx])
        return batch

    def batches(self, batch_size, shuffle=False, generator=None, group_by_length=False):
        import torch

        n = len(self)
        if shuffle and not group_by_length:  # the recipe's plain shuffling
            order = torch.randperm(n, generator=generator).tolist()
            batches = [order[k:k + batch_size] for k in range(0, n, batch_size)]
        elif shuffle:
            # Length-grouped: shuffle, then sort by length inside mega-batches of 50 batches,
            # then shuffle the batches — little padding, but batches of like lengths (measured:
            # 1.6x the tokens/s and 1.5-2 F1 points lower on WNUT-16; docs/nlp.md)
            order = torch.randperm(n, generator=generator).tolist()
            mega = batch_size * self.mega_batches
            groups = []
            for i in range(0, n, mega):
                chunk = sorted(order[i:i + mega], key=lambda j: len(self.input_ids[j]), reverse=True)
                groups += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
            perm = torch.randperm(len(groups), generator=generator).tolist()
            batches = [groups[p] for p in perm]
        else:  # evaluation: sorted by length (predictions go back to their sentences by index)
            order = sorted(range(n), key=lambda j: len(self.input_ids[j]))
            batches = [order[k:k + batch_size] for k in range(0, n, batch_size)]
        for idx in batches:
            yield self.collate(idx)


@dataclass
class TargetData:
    """What a target hands to a run: labelled splits, label names and how they were split.

    ``keys`` holds, per split, a digest of each example's raw content (:func:`content_key`), in
    the split's order: the leak check and the record's fingerprints compare examples by them.
    ``origins`` names, per split, the pool it was drawn from: splits carved from one pool must
    not share an example; splits from different pools (a dataset's own train and test files) may
    share duplicates the dataset really has, which are counted, not refused. Without ``origins``
    every split counts as carved from one pool.
    """

    label_names: list[str]
    splits: dict[str, Split]
    split_info: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Split] = field(default_factory=dict)  # e.g. unlabeled target-domain data
    keys: dict[str, np.ndarray] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)


SOURCE_VAL = "source_val"  # extra: the training domain's labelled val, when val and test are another domain's


class LeakError(HarnessError):
    """Two splits share examples they must not (the run would select or stop on its test set)."""

    exit_code = 2


def fingerprint(keys: Iterable[str]) -> str:
    """Identifies a set of examples (order-free): SHA-256 of the sorted content keys."""
    return digest_bytes("".join(sorted(keys)), 16)


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int,
                  keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """A fixed-seed random train/val/test partition of ``range(n)``.

    With ``keys`` (content digests), identical examples form one group that goes to one split
    whole, so no example is both trained on and held out; without duplicates the partition is
    the same as without keys.
    """
    rng = np.random.default_rng(seed)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    if keys is None:
        perm = rng.permutation(n)
        return {"test": np.sort(perm[:n_test]), "val": np.sort(perm[n_test:n_test + n_val]),
                "train": np.sort(perm[n_test + n_val:])}
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    members = list(groups.values())
    out: dict[str, list[int]] = {"test": [], "val": [], "train": []}
    for g in rng.permutation(len(members)):
        part = "test" if len(out["test"]) < n_test else "val" if len(out["val"]) < n_val else "train"
        out[part] += members[g]
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in out.items()}


def describe_split(parts: dict[str, np.ndarray], **how: Any) -> dict[str, Any]:
    """What a record keeps of how a split was made: the sizes, and what the target says (seed,
    fractions, source). Which examples: ``fingerprint``, added by :func:`harness.targets.load.audit`."""
    return {**how, "sizes": {k: len(v) for k, v in parts.items()}}


class SplitParams(Params):
    val_fraction: float = Field(0.15, ge=0.0, le=0.5, description="share of examples held out for validation")
    test_fraction: float = Field(0.2, gt=0.0, le=0.5, description="share of examples held out for test")
    split_seed: int = Field(0, ge=0, description="seed of the train/val/test partition (fixed across run seeds)")
