"""Text classification from any Hugging Face dataset, and the dataset loading shared with
token classification (``hfner/…`` in :mod:`harness.targets.tokens`).

``hftext/<dataset>``: ``<dataset>`` is a Hub id (``stanfordnlp/imdb``), a directory written by
``DatasetDict.save_to_disk``, or one of the ``datasets`` file builders (``json``, ``csv``,
``parquet``) with ``data_files``. Columns are chosen by params (``text_column``,
``label_column``, optional ``text_pair_column``). The model classifies from the first token's
features ([CLS]); metrics are accuracy and macro-F1.

Splits: the dataset's own ``train``/``validation``/``test`` splits when it has them (so figures
compare with published ones); a split it lacks is carved from ``train`` with the fixed
``split_seed`` (``val_fraction``/``test_fraction``), and the record says which. A split never
serves two roles: with ``test_split: validation`` (GLUE-style sets, whose test labels are
hidden) the validation split becomes the test set and the validation set is carved from
``train`` — model selection never sees the reported test examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from harness.digest import content_key
from harness.errors import HarnessError
from harness.registry import TARGETS
from harness.targets.base import (
    SplitParams,
    Target,
    TargetData,
    TokenSplit,
    describe_split,
    split_indices,
)


class HFDataError(HarnessError):
    exit_code = 2


class HFDatasetParams(SplitParams):
    config_name: str | None = Field(None, description="dataset configuration (subset) name")
    revision: str | None = Field(None, description="dataset git revision on the Hub (recorded)")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="files for the json/csv/parquet builders: a path, a list, or {split: path}")
    train_split: str = Field("train", description="split to train on")
    val_split: str | None = Field("validation", description="validation split (carved from train when absent, "
                                  "or when it is also the test split)")
    test_split: str | None = Field("test", description="test split (carved from train when absent)")


def load_splits(ref: str, name: str, p: HFDatasetParams,
                key_columns: tuple[str | None, ...] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{"train"|"val"|"test": datasets.Dataset}`` and what the record keeps about them.

    ``key_columns`` are the columns that make an example (its text, or its words): identical
    examples of the train split are carved as one, so none is both trained on and held out.
    """
    try:
        import datasets
    except ImportError:
        raise HFDataError(f"{ref}: the 'datasets' package is needed: pip install 'transfer-harness[nlp]'") from None
    try:
        from_disk = Path(name).is_dir() and (Path(name) / "dataset_dict.json").exists()
        if from_disk:
            dd = datasets.load_from_disk(name)
        else:
            kw = {k: v for k, v in (("name", p.config_name), ("revision", p.revision), ("data_files", p.data_files))
                  if v is not None}
            dd = datasets.load_dataset(name, **kw)
    except Exception as e:  # noqa: BLE001 - datasets raises many types; re-raised with the dataset named
        raise HFDataError(f"cannot load {ref}: {type(e).__name__}: {e}. With no network, save the dataset with "
                          "DatasetDict.save_to_disk() and name that directory, or use json/csv/parquet files "
                          "with data_files.") from e
    available = list(dd)
    if p.train_split not in dd:
        raise HFDataError(f"{ref}: no split '{p.train_split}' (train_split); it has: {', '.join(available)}")
    train = dd[p.train_split]
    out: dict[str, Any] = {}
    origin: dict[str, str] = {"train": p.train_split}
    pools: dict[str, str] = {"train": p.train_split}
    carve = {}
    for key, split_name, fraction in (("test", p.test_split, p.test_fraction), ("val", p.val_split, p.val_fraction)):
        if split_name is not None and f"{key}_split" in p.model_fields_set and split_name not in dd:
            raise HFDataError(f"{ref}: no split '{split_name}' ({key}_split); it has: {', '.join(available)}")
        taken = split_name in (p.train_split, *(pools[k] for k in out))
        if split_name is not None and split_name in dd and not taken:
            out[key] = dd[split_name]
            origin[key] = pools[key] = split_name
        else:
            carve[key] = fraction
            why = "" if split_name is None or split_name not in dd else f"; '{split_name}' is the {'train' if split_name == p.train_split else 'test'} split"
            origin[key] = f"carved from '{p.train_split}' ({fraction:.0%}, split_seed={p.split_seed}{why})"
            pools[key] = p.train_split
    parts = {"train": np.arange(len(train))}
    if carve:
        keys = example_keys(train, key_columns, ref)
        parts = split_indices(len(train), carve.get("val", 0.0), carve.get("test", 0.0), p.split_seed, keys=keys)
        for key in ("val", "test"):
            if key in carve:
                out[key] = train.select(parts[key])
    out["train"] = train.select(parts["train"]) if carve else train
    order = {k: out[k] for k in ("train", "val", "test")}
    info = describe_split({k: parts.get(k, np.arange(len(v))) for k, v in order.items()},
                          source=ref, dataset=name, config_name=p.config_name, revision=p.revision,
                          origin=origin, pools=pools, seed=p.split_seed,
                          fingerprint={k: getattr(v, "_fingerprint", None) for k, v in order.items()},
                          builder_hash=None if from_disk else builder_hash(train))
    return order, info


def example_keys(ds: Any, key_columns: tuple[str | None, ...], ref: str) -> np.ndarray | None:
    """Content keys of the rows of ``ds`` from ``key_columns`` (None when no column is named)."""
    cols = [c for c in key_columns if c is not None]
    if not cols:
        return None
    values = [column(ds, c, ref, "column") for c in cols]
    return np.asarray([content_key(*row) for row in zip(*values, strict=True)], dtype=object)


def pool_origins(info: dict[str, Any]) -> dict[str, str]:
    """Per split, the dataset split it was drawn from (:attr:`TargetData.origins`)."""
    return dict(info["pools"])


def builder_hash(ds: Any) -> str | None:
    """The hash ``datasets`` files its cache under: the Hub commit for a Hub dataset, a content
    hash for local files (the cache path is ``…/<name>/<config>/<version>/<hash>/…``)."""
    files = getattr(ds, "cache_files", None) or []
    return Path(files[0]["filename"]).parent.name if files else None


def class_names(feature: Any) -> list[str] | None:
    """Label names of a ``ClassLabel`` column (or of the items of a list-of-ClassLabel column)."""
    inner = getattr(feature, "feature", feature)
    names = getattr(inner, "names", None)
    return list(names) if names else None


def column(ds: Any, col: str, ref: str, key: str) -> list:
    if col not in ds.column_names:
        raise HFDataError(f"{ref}: no column '{col}' ({key}); columns: {', '.join(ds.column_names)}")
    return list(ds[col])


class HFTextParams(HFDatasetParams):
    text_column: str = Field("text", description="column with the text")
    text_pair_column: str | None = Field(None, description="second text of a pair (NLI, paraphrase), if any")
    label_column: str = Field("label", description="column with the class (ClassLabel, int or string)")


def text_target_data(splits: dict[str, Any], p: HFTextParams, backbone, ref: str, info: dict[str, Any]) -> TargetData:
    """Tokenise every split; labels come from the ClassLabel names, else the sorted distinct values."""
    names = class_names(splits["train"].features.get(p.label_column))
    raw = {k: column(ds, p.label_column, ref, "label_column") for k, ds in splits.items()}
    if names is None:
        values = sorted({v for vs in raw.values() for v in vs if v is not None}, key=lambda v: (str(type(v)), v))
        names = [str(v) for v in values]
        index = {v: i for i, v in enumerate(values)}
        raw = {k: [index.get(v, -1) if v is not None else -1 for v in vs] for k, vs in raw.items()}
    for k, vs in raw.items():
        bad = [i for i, v in enumerate(vs) if not 0 <= int(v) < len(names)]
        if bad:
            raise HFDataError(f"{ref}: split {info['origin'][k]!r} row {bad[0]}: label {vs[bad[0]]!r} is not one of "
                              f"{len(names)} classes ({len(bad)} such rows; unlabeled test sets such as GLUE's "
                              "use -1: set test_split: validation, and the validation set is carved from train)")
    spec = backbone.input_spec
    tok = spec.tokenizer
    out, truncated, keys = {}, 0, {}
    for k, ds in splits.items():
        keys[k] = example_keys(ds, (p.text_column, p.text_pair_column), ref)
        texts = column(ds, p.text_column, ref, "text_column")
        pairs = column(ds, p.text_pair_column, ref, "text_pair_column") if p.text_pair_column else None
        enc = tok(texts, pairs, truncation=True, max_length=spec.max_length) if pairs is not None else \
            tok(texts, truncation=True, max_length=spec.max_length)
        ids = [list(x) for x in enc["input_ids"]]
        truncated += sum(1 for x in ids if len(x) >= spec.max_length)
        out[k] = TokenSplit(ids, [[-100] * len(x) for x in ids], [()] * len(ids), tok.pad_token_id,
                            doc_labels=[int(v) for v in raw[k]])
    return TargetData(
        label_names=names, splits=out, split_info=info, keys=keys, origins=pool_origins(info),
        preprocessing={"max_length": spec.max_length, "pooling": "first token ([CLS])",
                       "text_column": p.text_column, "text_pair_column": p.text_pair_column,
                       "label_column": p.label_column, "texts_at_max_length": truncated,
                       "truncation": "texts longer than max_length are cut at max_length tokens"},
    )


@TARGETS.register("hftext", description="any Hugging Face dataset with text/label columns: hftext/<id | saved dir | json | csv | parquet>")
class HFText(Target):
    Params = HFTextParams
    tasks = frozenset({"text-classification"})
    default_task = "text-classification"

    name_hint = "hftext/<hub id>, hftext/<saved directory> or hftext/json with data_files"

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        p = HFTextParams.model_validate(params)
        ref = f"hftext/{name}"
        splits, info = load_splits(ref, name, p, (p.text_column, p.text_pair_column))
        return text_target_data(splits, p, backbone, ref, info)
