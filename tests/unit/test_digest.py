"""Every stable digest the harness stores keeps its value: run_ids, cache keys, decode keys, plot
keys, content keys and fingerprints are compared with what earlier runs wrote (committed records, a
warm cache), so a refactor of the hashing must give the same hex digits as before, bit for bit.
The pinned values were computed with the hashers as they were before they shared one module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.cache import key
from harness.digest import content_key, digest, digest_bytes
from harness.plan import config_hash, make_run_id
from harness.report.aggregate import Row
from harness.report.plots import digest as plot_digest
from harness.report.plots import styles_for
from harness.report.stats import summarize
from harness.targets.base import TokenSplit, fingerprint, keys_of_rows
from harness.targets.vision.decode import decode_key

CONFIG = {"pair": "p", "seed": 0, "train": {"lr": 1e-3, "epochs": 2}, "path": Path("a/b"), "smoke": False,
          "z": [1, 2.5, None]}


def test_run_id_hash_is_pinned():
    assert config_hash(CONFIG) == "0a6b11b9d5"
    assert config_hash(dict(reversed(CONFIG.items()))) == "0a6b11b9d5"  # key order is not identity
    assert make_run_id("p", "probe", 0, CONFIG) == "p.probe.s0-0a6b11b9d5"


def test_cache_key_is_pinned():
    assert key({"features": "abc", "n": [1, 2], "p": Path("x")}, 3) == "e782d2acdecd676f3051"
    assert key(["a", 1]) == "7a57dd360f8422a383e0"


def test_decode_key_is_pinned():
    assert decode_key("fp123", 224, "bilinear", 10) == "19b40bf4f15de59d1fd5adf7"


def test_content_keys_and_fingerprint_are_pinned():
    parts = ("word", b"\x00\x01", np.arange(6, dtype=np.int64).reshape(2, 3), torch.tensor([1.5, -2.0]),
             ["a", ("b", 3)], 7, None)
    assert content_key(*parts) == "85d6a32f7f131427feeab74fb9e0946c"
    assert fingerprint(["b", "a", "c"]) == "ba7816bf8f01cfea"
    assert list(keys_of_rows(torch.arange(6).reshape(3, 2), torch.tensor([0, 1, 1]))) == [
        "aaec4159d191ebc1577ade1188a77cdd", "a7d7a42c65525cf58a29c29c389dc641", "9228dc06dc7e9dc1eeb8310c650d0e59"]
    tokens = TokenSplit([[1, 2], [3]], [[0, 0], [1]], [["x", "y"], ["z"]], 0)
    assert list(tokens.example_keys()) == ["8ba999aa87481fea172faa6078877204", "2753c9139a87d107669c87bb2d6608e5"]


def test_content_key_tells_types_and_shapes_apart():
    # the same bytes as another dtype, shape or container are other content
    a = np.arange(4, dtype=np.int32)
    assert len({content_key(a), content_key(a.reshape(2, 2)), content_key(a.astype(np.int64)),
                content_key(a.tobytes()), content_key([a]), content_key(torch.from_numpy(a))}) == 5
    assert content_key(torch.from_numpy(a)) == content_key(a)  # a tensor is keyed as its array


def test_plot_digest_is_pinned():
    probe = Row("s", "pair", "linear_probe", "linear_probe", "image-classification", "accuracy", False,
                metrics={"accuracy": summarize([0.5, 0.7])}, cost={"train_s": summarize([1.0, 2.0])},
                curve={1: summarize([0.4, 0.5]), 2: summarize([0.6])}, pareto=True)
    scratch = Row("s", "pair", "scratch", "scratch", "image-classification", "accuracy", False,
                  metrics={"accuracy": summarize([0.1])})
    styles = styles_for(["linear_probe", "scratch"])
    assert plot_digest("pareto", [scratch, probe], styles) == "9d8337a0183ec52a6cd5"
    assert plot_digest("curve", [], {}) == "65c0cf19126cddbcbef1"


def test_digest_is_canonical_json_sha256():
    assert digest({"b": 1, "a": [1, 2]}) == digest({"a": [1, 2], "b": 1})
    assert digest({"a": 1}) == digest_bytes(b'{"a": 1}')
    assert digest({"a": [1, 2]}, compact=True) == digest_bytes(b'{"a":[1,2]}')
    assert digest_bytes(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert digest({"p": Path("x")}, 12) == digest({"p": "x"})[:12]  # what JSON cannot hold: its str()
