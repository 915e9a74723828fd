"""Every split size the docs state comes from the data: the offline targets are loaded the way a
run loads them (``load_target``, through the registry) and each count written in the docs is
compared with the split it describes, so a count cannot go stale."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.registry import SOURCES
from harness.targets.load import load_target

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"([~≈]?[\d,]+)"  # a count as the docs write it; "~" or "≈" makes it an estimate, which fails

# (page, pattern with one group per count, (dataset, split) per group); "all" is every split together
COUNTS: list[tuple[str, str, tuple[tuple[str, str], ...]]] = [
    ("docs/strategies.md", rf"8×8 digits upsampled to 48 px, {NUMBER} training images", (("digits", "train"),)),
    ("docs/strategies.md", rf"the probe trained on the {NUMBER} labelled target-domain images of val",
     (("digits", "val"),)),
    ("docs/strategies.md", rf"whole training split \({NUMBER} tweets", (("wnut16", "train"),)),
    ("docs/strategies.md", rf"of the {NUMBER} test tweets and \d+ of the {NUMBER}\s+validation tweets",
     (("wnut16", "test"), ("wnut16", "val"))),
    ("docs/benchmarks.md", rf"digits 48 px, {NUMBER} × [\d,]+ features", (("digits", "train"),)),
    ("docs/benchmarks.md", rf"of {NUMBER} test and \d+ of {NUMBER} validation tweets", (("wnut16", "test"), ("wnut16", "val"))),
    ("docs/transferability.md", rf"digits \({NUMBER} training images\)", (("digits", "train"),)),
    ("docs/transferability.md", rf"all of digits \({NUMBER} training images\)", (("digits", "train"),)),
    ("docs/nlp.md", rf"WNUT-16 Twitter NER shipped offline \({NUMBER} tweets\)", (("wnut16", "all"),)),
    ("docs/nlp.md", rf"{NUMBER} sentences × 4 epochs = 392 steps", (("wnut16", "train"),)),
    ("docs/nlp.md", rf"{NUMBER} test sentences", (("wnut16", "test"),)),
    ("docs/reporting.md", rf"all {NUMBER} val and {NUMBER} test tweets", (("wnut16", "val"), ("wnut16", "test"))),
    ("docs/scaling.md", rf"loading {NUMBER} 8×8 images", (("digits", "all"),)),
    ("docs/scaling.md", rf"tokenising {NUMBER} tweets", (("wnut16", "all"),)),
    ("README.md", rf"of {NUMBER} test images\)", (("digits", "test"),)),
    ("suites/zoo.yaml", rf"\({NUMBER} training images\) and on a 10-shot variant", (("digits", "train"),)),
]


@pytest.fixture(scope="module")
def sizes() -> dict[str, dict[str, int]]:
    test = SOURCES.get("test")
    cnn = test.build("tiny_cnn", {}, pretrained=True)
    bert = test.build("tiny_bert", {"max_length": 32}, pretrained=True)
    out = {}
    for name, block, backbone, task in (("digits", "sklearn/digits", cnn, "image-classification"),
                                        ("wnut16", "packaged/wnut16", bert, "token-classification")):
        data = load_target({"dataset": block, "task": task}, backbone, task)
        out[name] = {k: len(s) for k, s in data.splits.items()}
        out[name]["all"] = sum(out[name].values())
    return out


def count(text: str) -> int | None:
    """A written count as an int; None for an estimate ("~180"), which no split size is."""
    return None if text[0] in "~≈" else int(text.replace(",", ""))


@pytest.mark.parametrize(("page", "pattern", "splits"), COUNTS, ids=[f"{p}:{s[0]}" for p, _, s in COUNTS])
def test_each_split_size_in_the_docs_is_the_loaded_split_size(sizes, page, pattern, splits):
    text = (ROOT / page).read_text()
    found = list(re.finditer(pattern, text))
    assert found, f"{page} no longer says /{pattern}/: reword this check (tests/unit/test_doc_counts.py) with it"
    for match in found:
        for written, (dataset, split) in zip(match.groups(), splits, strict=True):
            assert count(written) == sizes[dataset][split], (
                f"{page}: '{match.group(0)}' states {written} for {dataset}'s {split} split, which holds "
                f"{sizes[dataset][split]}")


def test_no_split_size_is_written_as_an_estimate():
    """'~180 labelled images' hid a count the data gives exactly (270)."""
    text = (ROOT / "docs/strategies.md").read_text()
    assert not re.search(r"[~≈]\s?[\d,]+ (labelled|training|test|validation)", text)


def test_the_counts_are_checked_against_the_splits_loaded(sizes):
    # the datasets' sizes as sklearn and the packaged file hold them: 1,797 digits, 2,394 tweets
    assert sizes["digits"]["all"] == 1797 and sizes["wnut16"]["all"] == 2394
