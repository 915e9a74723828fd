"""Per-example predictions kept beside each record, and ``harness rescore`` recomputing metrics from them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness import api
from harness import predictions as kept
from harness.cli import main
from harness.metrics import Predictions, compute
from harness.records import RunRecord, read_record, scan, write_record

SUITE = """\
suite: kept
seeds: [0]
defaults: {epochs: 1, batch_size: 16, lr: 1e-2}
pairs:
  - id: cnn-images
    source: {model: test/tiny_cnn}
    target: {dataset: test/tiny_images, task: image-classification}
  - id: bert-ner
    source: {model: test/tiny_bert}
    target: {dataset: test/tiny_ner, task: token-classification}
strategies:
  - linear_probe
"""


@pytest.fixture
def results(write_suite, tmp_path):
    outcome = api.run(write_suite(SUITE), "local", tmp_path / "results")
    assert [r.status for r in outcome.done] == ["ok", "ok"]
    return tmp_path / "results"


def test_every_ok_run_keeps_its_predictions_named_with_their_checksum(results):
    records, corrupt = scan(results)
    assert not corrupt and len(records) == 2
    for r in records:
        ref = r.predictions
        path = results / "kept" / ref["file"]
        assert ref["file"] == f"{r.run_id}.preds.npz" and path.is_file()
        assert kept.sha256(path.read_bytes()) == ref["sha256"]
        splits = kept.load(path.parent, ref)
        assert "test" in splits  # val too, unless the strategy scored its own held-out val (the L-BFGS probe)
        test = splits["test"]
        # one content key per example (per sentence on the token task), the ignore index kept out
        if r.task == "token-classification":
            units = len(test.predictions.sequences)
            assert len(test.predictions.seq_index) == len(test.predictions.y_true) > units
        else:
            units = len(test.predictions.y_true)
            assert units == r.metrics["n"]
        assert len(test.keys) == units and len(set(test.keys.tolist())) == units
        assert (test.predictions.y_true >= 0).all()
        # the record's own fields are what they were: the block is the one new field
        assert r.metrics["val"] and r.primary_metric in r.metrics


def test_rescore_recomputes_the_recorded_primary_metric_exactly(results, capsys):
    found = api.rescore(results)
    assert not found.skipped
    by_run = {(r.pair, r.metric): r for r in found.rows}
    for pair, metric in [("cnn-images", "accuracy"), ("bert-ner", "f1")]:
        row = by_run[(pair, metric)]
        assert row.value == row.recorded  # exactly: the same predictions through the same metric
    assert by_run[("bert-ner", "f1")].value > 0  # a score that could differ, not two zeros
    # another seqeval mode, never computed by the run, from the same file
    lenient = api.rescore(results, metrics=["seqeval_conlleval"])
    assert [r.metric for r in lenient.rows if r.pair == "bert-ner"] == ["precision", "recall", "f1"]
    assert any("seqeval_conlleval does not apply" in s and "cnn-images" in s for s in lenient.skipped)
    assert main(["rescore", "--results", str(results)]) == 0
    assert "| cnn-images.linear_probe.s0-" in capsys.readouterr().out


def test_a_tampered_or_missing_file_is_refused_by_name(results, capsys):
    rec = next(r for r in scan(results)[0] if r.pair == "cnn-images")
    path = results / "kept" / rec.predictions["file"]
    data = kept.decode(path.read_bytes())
    p = data["test"].predictions
    flipped = Predictions(p.y_true, (p.y_pred + 1) % len(p.label_names), p.label_names)
    path.write_bytes(kept.encode({**data, "test": kept.SplitPredictions(data["test"].keys, flipped)}))
    found = api.rescore(results)
    assert {r.pair for r in found.rows} == {"bert-ner"}
    assert any(str(path) in s and "SHA-256" in s for s in found.skipped)
    assert main(["rescore", "--results", str(results)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: not rescored: ") and f"{path}: its SHA-256" in err
    path.unlink()
    assert any(str(path) in s and "missing" in s for s in api.rescore(results).skipped)


def test_write_keeps_the_values_in_the_record_and_changes_nothing_else(results):
    rec_path = next((results / "kept").glob("bert-ner*.json"))
    before = json.loads(rec_path.read_text())
    found = api.rescore(results, metrics=["seqeval_conlleval"], write=True)
    assert len(found.written) == 2
    after = json.loads(rec_path.read_text())
    assert after["predictions"]["rescored"]["test"]["f1"] == next(
        r.value for r in found.rows if r.pair == "bert-ner" and r.metric == "f1")
    after["predictions"].pop("rescored")
    assert after == before
    assert not api.rescore(results).skipped  # the checksum is of the file, which did not change


def test_token_predictions_round_trip_with_offsets():
    p = Predictions(np.array([1, 2, 0, 1]), np.array([1, 0, 0, 1]), ["O", "B-x", "I-x"],
                    np.array([0, 0, 1, 2]), [["B-x", "I-x", "O"], ["O"], ["B-x"]])
    back = kept.decode(kept.encode({"test": kept.SplitPredictions(np.array(["a", "b", "c"]), p)}))["test"]
    assert back.keys.tolist() == ["a", "b", "c"]
    assert [list(s) for s in back.predictions.sequences] == [["B-x", "I-x", "O"], ["O"], ["B-x"]]
    assert back.predictions.seq_index.tolist() == [0, 0, 1, 2]
    assert compute(["seqeval"], back.predictions) == compute(["seqeval"], p)


def test_a_split_whose_keys_do_not_line_up_is_left_out():
    p = Predictions(np.array([0, 1, 1]), np.array([0, 1, 0]), ["a", "b"])
    assert set(kept.collect({"test": p, "val": p}, {"test": np.array(["x", "y", "z"]), "val": np.array(["x"])})) \
        == {"test"}


def test_an_old_record_without_predictions_reads_and_writes_as_before(tmp_path):
    rec = RunRecord(run_id="r", suite="s", pair="p", strategy="x", label="x", seed=0, status="ok", config={},
                    started_at="t", finished_at="t")
    path = write_record(tmp_path, rec.with_prediction_bytes(b"never written: the record names no file"))
    assert read_record(path).predictions is None and list(tmp_path.iterdir()) == [path]


def test_the_predictions_file_is_on_disk_before_its_record_and_travels_pickled(tmp_path, monkeypatch):
    import pickle

    from harness import records

    p = Predictions(np.array([0, 1]), np.array([0, 0]), ["a", "b"])
    data = kept.encode({"test": kept.SplitPredictions(np.array(["x", "y"]), p)})
    rec = RunRecord(run_id="r1", suite="s", pair="p", strategy="x", label="x", seed=0, status="ok", config={},
                    started_at="t", finished_at="t", predictions=kept.reference(data, "r1"))
    # a pool worker or a Ray task hands the record back pickled: the bytes come with it
    rec = pickle.loads(pickle.dumps(rec.with_prediction_bytes(data)))
    seen = []
    monkeypatch.setattr(records, "mid_write_hook", lambda path: seen.append(
        (path.name, (tmp_path / "r1.preds.npz").is_file())))
    write_record(tmp_path, rec)
    assert seen == [("r1.preds.npz", False), ("r1.json", True)]  # the record is written once the file is whole
    assert kept.load(tmp_path, read_record(tmp_path / "r1.json").predictions)["test"].keys.tolist() == ["x", "y"]
