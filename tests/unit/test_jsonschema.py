"""`harness schema`: the JSON Schema of suite files agrees with the validator and with what is committed."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from harness.cli import main
from harness.errors import ConfigError
from harness.suite import load_suite
from harness.suite_schema import MODELINE, load_yaml12, schema_text, suite_schema

ROOT = Path(__file__).resolve().parents[2]
SUITES = sorted((ROOT / "suites").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = suite_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_what_harness_schema_generates(tmp_path, capsys):
    out = tmp_path / "suite.schema.json"
    assert main(["schema", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == (ROOT / "docs" / "suite.schema.json").read_text(encoding="utf-8"), \
        "docs/suite.schema.json is stale: run `harness schema --out docs/suite.schema.json`"
    capsys.readouterr()
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == schema_text()


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.name)
def test_every_suite_has_the_modeline_and_validates(path, validator):
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == MODELINE
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(load_yaml12(text))]
    assert not errors


def test_descriptions_reach_the_editor():
    schema = suite_schema()
    defs = schema["$defs"]
    assert "peak learning rate" in defs["train.lr"]["description"]
    lora = defs["strategy"]["anyOf"][1]["properties"]["lora"]
    assert "peft" in lora["description"]
    assert lora["anyOf"][1]["properties"]["r"]["description"] == "rank of the update"


def _quickstart() -> dict:
    return yaml.safe_load((ROOT / "suites" / "quickstart.yaml").read_text(encoding="utf-8"))


def _bad(change) -> dict:
    data = copy.deepcopy(_quickstart())
    change(data)
    return data


BAD = {
    "unknown top-level key": lambda d: d.update(seed=[0]),
    "unknown training key": lambda d: d["defaults"].update(epoch=3),
    "wrong type": lambda d: d["defaults"].update(epochs="three"),
    "out of range": lambda d: d["defaults"].update(batch_size=0),
    "seeds not a list": lambda d: d.update(seeds=0),
    "unknown strategy": lambda d: d["strategies"].append("ful_finetune"),
    "unknown strategy parameter": lambda d: d["strategies"].append({"lora": {"rank": 8}}),
    "strategy parameter of a wrong type": lambda d: d["strategies"].append({"lora": {"r": "eight"}}),
    "unknown pair key": lambda d: d["pairs"][0].update(trian={}),
    "pair without a target": lambda d: d["pairs"][0].pop("target"),
    "unknown source namespace": lambda d: d["pairs"][0]["source"].update(model="tim/resnet18"),
    "source key of another namespace": lambda d: d["pairs"][0]["source"].update(revision="main"),
    "unknown target key": lambda d: d["pairs"][0]["target"].update(imagesize=48),
    "bad search method": lambda d: d["pairs"][0]["train"]["search"].update(method="bayes"),
    "unknown searched key": lambda d: d["pairs"][0]["train"]["search"].update(learning_rate=[1e-3]),
    "bad pair id": lambda d: d["pairs"][0].update(id="a/b"),
    "unknown pretrain key": lambda d: d["pairs"][0]["source"].update(
        pretrain={"target": {"dataset": "sklearn/digits"}, "epochs": 2}),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_schema_and_validator_both_refuse(name, validator, tmp_path):
    data = _bad(BAD[name])
    path = tmp_path / "bad.yaml"
    path.write_text(MODELINE + "\n" + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    with pytest.raises(ConfigError):
        load_suite(path)
    assert list(validator.iter_errors(load_yaml12(path.read_text(encoding="utf-8")))), \
        f"the schema accepts a suite the validator refuses ({name})"


def test_the_unchanged_suite_passes_both(validator, tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(MODELINE + "\n" + yaml.safe_dump(_quickstart(), sort_keys=False), encoding="utf-8")
    load_suite(path)
    assert not list(validator.iter_errors(load_yaml12(path.read_text(encoding="utf-8"))))


def test_yaml12_reads_exponents_as_numbers():
    assert load_yaml12("lr: 1e-3\nn: 3\nname: 1e-3x") == {"lr": 0.001, "n": 3, "name": "1e-3x"}
