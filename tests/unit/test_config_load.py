"""Suite loading: good files load; bad files list every error as FILE:LINE: key.path: message."""

from __future__ import annotations

import pytest

from harness.errors import ConfigError
from harness.suite import load_suite
from tests.conftest import TINY_SUITE


def errors_of(path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_suite(path)
    return [str(i) for i in exc.value.issues]


def test_good_suite_loads(write_suite):
    spec = load_suite(write_suite(TINY_SUITE))
    assert spec.suite == "tiny"
    assert spec.seeds == (0, 1)
    assert [s.label for s in spec.strategies] == ["scratch", "linear_probe", "full_finetune"]
    assert spec.strategies[2].train == {"lr": 3e-3}
    assert spec.pairs[0].target.task == "image-classification"
    assert spec.defaults["lr"] == 1e-2  # YAML reads 1e-2 as a string; the schema parses it


def test_unknown_key_names_file_line_path_and_suggests(write_suite):
    path = write_suite(TINY_SUITE.replace("batch_size: 16", "batch_sise: 16"))
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:3: defaults.batch_sise: unknown key 'batch_sise'.")
    assert "Did you mean: batch_size" in err


def test_every_error_reported_at_once(write_suite):
    bad = TINY_SUITE.replace("seeds: [0, 1]", "seeds: [0, -1]").replace(
        "model: test/tiny_cnn", "model: test/tiny_cnm").replace("- scratch", "- scrach").replace(
        "lr: 3e-3", "lr: -1")
    errs = errors_of(write_suite(bad))
    text = "\n".join(errs)
    assert len(errs) == 4, text
    assert ":2: seeds:" in text
    assert ":6: pairs[0].source.model: unknown model 'tiny_cnm'. Did you mean: tiny_cnn?" in text
    assert ":9: strategies[0]: Unknown strategy 'scrach'. Did you mean: scratch?" in text
    assert ":11: strategies[2].full_finetune.lr:" in text and "greater than 0" in text


def test_unknown_namespace_and_task(write_suite):
    bad = TINY_SUITE.replace("model: test/tiny_cnn", "model: tim/resnet18").replace(
        "task: image-classification", "task: image-clasification")
    text = "\n".join(errors_of(write_suite(bad)))
    assert "pairs[0].source.model: Unknown source namespace 'tim'. Did you mean: timm?" in text
    assert "pairs[0].target.task: Unknown task 'image-clasification'. Did you mean: image-classification" in text


def test_incompatible_pair_and_task(write_suite):
    bad = TINY_SUITE.replace("test/tiny_cnn", "test/tiny_bert")
    (err,) = errors_of(write_suite(bad))
    assert "pairs[0].target.task: task 'image-classification' needs a image model" in err
    assert "'test/tiny_bert' is a text model" in err


def test_python_tags_are_rejected(write_suite):
    bad = TINY_SUITE.replace("suite: tiny", "suite: !!python/object/apply:os.system ['echo pwned']")
    (err,) = errors_of(write_suite(bad))
    assert ":1: <root>: invalid YAML" in err
    assert "python/object" in err


def test_yaml_syntax_error_has_line(write_suite):
    (err,) = errors_of(write_suite(TINY_SUITE.replace("pairs:", "pairs: [")))
    assert "invalid YAML" in err
    assert err.split(":")[1].isdigit()


def test_duplicate_keys_and_labels(write_suite):
    bad = TINY_SUITE.replace("  - full_finetune: {lr: 3e-3}", "  - scratch\n") + "seeds: [3]\n"
    text = "\n".join(errors_of(write_suite(bad)))
    assert "seeds: duplicate key" in text
    assert "label 'scratch' is used twice" in text


def test_path_escaping_names_rejected(write_suite):
    bad = TINY_SUITE.replace("id: cnn-images", "id: ../../etc").replace("suite: tiny", "suite: a/b")
    text = "\n".join(errors_of(write_suite(bad)))
    assert "suite: suite name must match" in text
    assert "pairs[0].id: pair id must match" in text


def test_overrides_must_name_a_strategy_label(write_suite):
    bad = TINY_SUITE.replace("task: image-classification}",
                             "task: image-classification}\n    overrides: {full_finetun: {lr: 1e-4}}")
    (err,) = errors_of(write_suite(bad))
    assert "pairs[0].overrides.full_finetun: no strategy labelled 'full_finetun'" in err
    assert "Did you mean: full_finetune?" in err


def test_missing_required_keys_and_file(write_suite, tmp_path):
    text = "\n".join(errors_of(write_suite("suite: x\n")))
    for key in ("seeds", "pairs", "strategies"):
        assert f"missing required key '{key}'" in text
    (err,) = errors_of(tmp_path / "nope.yaml")
    assert err.endswith("nope.yaml:1: <root>: file not found")


def test_false_and_zero_are_values_not_absence(write_suite):
    from harness.plan import expand

    good = TINY_SUITE.replace("lr: 1e-2}", "lr: 1e-2, max_grad_norm: null, weight_decay: 0.1}").replace(
        "  - linear_probe\n", "  - linear_probe: {weight_decay: 0}\n")
    runs = expand(load_suite(write_suite(good)))
    probe = next(r for r in runs if r.label == "linear_probe")
    ft = next(r for r in runs if r.label == "full_finetune")
    assert probe.train["weight_decay"] == 0.0
    assert ft.train["weight_decay"] == 0.1
    assert probe.train["max_grad_norm"] is None


def test_missing_data_file_is_a_validate_error(write_suite, tmp_path):
    conll = tmp_path / "ner.txt"
    suite = """\
    suite: ner
    seeds: [0]
    pairs:
      - id: bert-ner
        source: {model: test/tiny_bert}
        target: {dataset: conll/%s, task: token-classification}
    strategies: [full_finetune]
    """
    path = write_suite(suite % conll)
    (err,) = errors_of(path)
    assert f"{path}:6: pairs[0].target.dataset: CoNLL file not found: {conll}" in err
    conll.write_text("EU B-org\nrejects O\n\nPeter B-per\n")
    assert load_suite(path).pairs[0].target.ref == f"conll/{conll}"
