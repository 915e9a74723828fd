"""``suites/nlp.yaml`` as written — every strategy, its hyperparameters — run offline in smoke mode
with the model swapped for a tiny BERT saved with ``save_pretrained`` and CoNLL-2003 for a small
Parquet file in the Hub's schema. What a GPU run would hit first (a strategy that cannot handle
``hf/`` models or ``hfner/`` data) fails here."""

from __future__ import annotations

import json

import pytest
import yaml

pytest.importorskip("datasets")

from harness.cli import main  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.unit.test_text_hf_source import save_tiny  # noqa: E402
from tests.unit.test_tokens_hf_datasets import write_conll2003_parquet  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.mark.slow  # ten smoke runs: ~30 s of CPU
def test_nlp_suite_runs_every_strategy_offline(tmp_path, capsys):
    suite = yaml.safe_load((ROOT / "suites" / "nlp.yaml").read_text())
    model_dir, _ = save_tiny(tmp_path, "bert", layers=5)  # deep enough for partial_finetune's 4 blocks
    (pair,) = suite["pairs"]
    assert pair["source"]["model"] == "hf/bert-base-cased" and pair["target"]["dataset"] == "hfner/conll2003"
    pair["source"] = {**pair["source"], "model": f"hf/{model_dir}", "max_length": 32}
    pair["target"] = {**pair["target"], "dataset": "hfner/parquet", "data_files": write_conll2003_parquet(tmp_path)}
    suite["seeds"] = [0]
    path = tmp_path / "nlp-offline.yaml"
    path.write_text(yaml.safe_dump(suite))
    results = tmp_path / "results"
    code = main(["run", str(path), "--smoke", "--results", str(results), "--no-progress"])
    out = capsys.readouterr().out
    records = [json.loads(p.read_text()) for p in results.rglob("*.json") if p.parent.name != ".cache"]
    records = [r for r in records if "run_id" in r]
    failed = {r["strategy"]: (r.get("error") or {}).get("message") for r in records if r["status"] != "ok"}
    assert code == 0 and not failed, (failed, out[-2000:])
    assert sorted(r["strategy"] for r in records) == sorted(
        next(iter(s)) if isinstance(s, dict) else s for s in suite["strategies"])
    for r in records:
        assert {"f1", "precision", "recall"} <= set(r["metrics"]), r["strategy"]
        assert r["split"]["origin"] == {"train": "train", "val": "validation", "test": "test"}
