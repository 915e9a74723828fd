"""Cached artefacts are written atomically with a SHA-256 beside them and verified on read: a torn,
flipped or orphaned cache file is recomputed, never trusted, and the run that found it counts it in
its record (``notes.cache_rejected``) — for each cache: frozen features, the probe's fitted heads,
the domain gap, decoded images (a teacher's exported logits: tests/unit/test_strategies_transfer.py)."""

from __future__ import annotations

import hashlib
import io

import pytest
import torch

from harness import cache
from harness.plan import expand
from harness.records import TMP_SUFFIX
from harness.run.execute import ExecOptions, execute
from harness.suite import load_suite

from .support import CNN_PAIR

SUITE = """\
suite: cache
seeds: [0]
defaults: {epochs: 1, batch_size: 16, max_train_samples: 48, max_eval_samples: 16}
""" + CNN_PAIR + """\
strategies:
  - linear_probe
"""


def damage_flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def damage_truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damage_orphan(path):
    path.with_suffix(".sha256").unlink()


def damage_sidecar(path):
    path.with_suffix(".sha256").write_text("0" * 64)


def same_tensors(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(k == "seconds" or same_tensors(a[k], b[k]) for k in a)
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def hit(record, kind: str) -> bool:
    notes = record.config["notes"]
    return notes["feature_cache_hit"] if kind == "features" else notes["lbfgs"]["fit_cache_hit"]


@pytest.mark.parametrize("kind", ["features", "probe_fits"])  # the frozen features; the probe's L-BFGS head
@pytest.mark.parametrize("damage", [damage_flip, damage_truncate, damage_orphan, damage_sidecar])
def test_a_damaged_cache_entry_is_recomputed_not_trusted(write_suite, tmp_path, damage, kind):
    (spec,) = expand(load_suite(write_suite(SUITE)))
    options = ExecOptions(cache_dir=tmp_path / "cache")
    first = execute(spec, options)
    assert first.status == "ok" and hit(first, kind) is False
    (pt,) = (tmp_path / "cache" / kind).rglob("*.pt")
    good = pt.read_bytes()
    assert hashlib.sha256(good).hexdigest() == pt.with_suffix(".sha256").read_text().strip()
    assert hit(execute(spec, options), kind) is True  # verified: reused

    damage(pt)
    third = execute(spec, options)
    assert third.status == "ok" and hit(third, kind) is False  # rebuilt
    assert third.config["notes"]["cache_rejected"] == {kind: 1}  # and counted in the record
    assert third.metrics == first.metrics  # from recomputed features, not from the damaged file
    rebuilt = cache.load(pt)  # verified against its new sidecar; the same tensors (only the time taken differs)
    assert rebuilt is not None and same_tensors(rebuilt, torch.load(io.BytesIO(good), weights_only=True))
    assert not list((tmp_path / "cache").rglob(f"*{TMP_SUFFIX}"))


def test_a_run_that_reuses_cached_work_is_charged_what_that_work_took(write_suite, tmp_path):
    """The second seed of a probe reads the first one's features and fit from the cache: its record
    says what that work took when computed, and the report's wall time counts it."""
    from harness.report.aggregate import aggregate

    (spec,) = expand(load_suite(write_suite(SUITE)))
    options = ExecOptions(cache_dir=tmp_path / "cache")
    first, second = execute(spec, options), execute(spec, options)
    assert "reused" not in first.cost
    reused = second.cost["reused"]
    assert set(reused) == {"feature", "fit"} and all(v > 0 for v in reused.values())
    assert reused["feature"] <= first.cost["feature_s"] and reused["fit"] <= first.cost["train_s"]
    (row,) = aggregate([second])
    assert row.cost["wall_s"].mean == pytest.approx(second.cost["wall_s"] + sum(reused.values()))
    assert row.cost["feature_s"].mean == pytest.approx(second.cost["feature_s"] + reused["feature"])


DA_SUITE = """\
suite: cache
seeds: [0]
defaults: {epochs: 1, batch_size: 16, max_train_samples: 48, max_eval_samples: 16}
pairs:
  - id: cnn
    source: {model: test/tiny_cnn}
    target: {dataset: test/tiny_images, task: image-classification, unlabeled: shifted}
strategies:
  - linear_probe
"""


@pytest.mark.parametrize("damage", [damage_flip, damage_truncate, damage_orphan])
def test_a_damaged_domain_gap_entry_is_recomputed_and_counted(write_suite, tmp_path, damage):
    (spec,) = expand(load_suite(write_suite(DA_SUITE)))
    options = ExecOptions(cache_dir=tmp_path / "cache")
    first = execute(spec, options)
    (pt,) = (tmp_path / "cache" / "domain_gap").rglob("*.pt")
    damage(pt)
    again = execute(spec, options)
    assert again.data["domain_gap"] == first.data["domain_gap"]
    assert again.config["notes"]["cache_rejected"] == {"domain_gap": 1}
    assert cache.load(pt) is not None  # rewritten, verified


@pytest.mark.parametrize("damage", [damage_flip, damage_truncate, damage_orphan])
def test_a_damaged_decoded_image_cache_is_rebuilt_and_counted(tmp_path, damage, monkeypatch):
    from tests.unit.test_vision_targets import _write_folder

    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    _write_folder(tmp_path / "pets", classes=("a", "b"), per_class=4, size=(8, 8))
    suite = write_folder_suite(tmp_path)
    (spec,) = expand(load_suite(suite))
    options = ExecOptions(cache_dir=tmp_path / "cache")
    first = execute(spec, options)
    assert first.status == "ok", first.error
    (pt,) = (tmp_path / "data" / ".decoded").glob("*.pt")
    assert pt.with_suffix(".sha256").is_file()  # through the one cache module
    from harness.run import execute as run_execute

    run_execute._TARGETS.clear()  # a fresh process would load the target again
    damage(pt)
    again = execute(spec, options)
    assert again.status == "ok" and again.metrics == first.metrics
    assert again.config["notes"]["cache_rejected"] == {"decoded": 1}


def write_folder_suite(tmp_path):
    path = tmp_path / "folder.yaml"
    path.write_text(f"""\
suite: cache
seeds: [0]
defaults: {{epochs: 1, batch_size: 4}}
pairs:
  - id: pets
    source: {{model: test/tiny_cnn}}
    target: {{dataset: 'imagefolder/{tmp_path / "pets"}', task: image-classification, val_fraction: 0.25, test_fraction: 0.25}}
strategies:
  - scratch
""")
    return path
