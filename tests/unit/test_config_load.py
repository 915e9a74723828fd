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
    assert "Did you mean: full_finetune" in err


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


# --------------------------------------------------------------------------- the config layer's own pieces


def harness_imports(path) -> set[str]:
    """The ``harness`` modules a source file imports, at its top or inside functions."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m == "harness" or m.startswith("harness.")}


@pytest.mark.parametrize("module, allowed", [
    # config sits below plan and search: a suite's search blocks and cell checks are parsed and
    # run from above it (harness.suite), never called back from config
    ("config", ("harness.config.", "harness.errors", "harness.registry")),
    # search is one module, importing only downward: config, records, errors
    ("search.py", ("harness.config.", "harness.errors", "harness.records")),
])
def test_config_and_search_import_only_downward(module, allowed):
    from pathlib import Path

    import harness

    root = Path(harness.__file__).parent / module
    files = sorted(root.glob("*.py")) if root.is_dir() else [root]
    assert files
    upward = {f"{f.name}: {m}" for f in files for m in harness_imports(f) if not m.startswith(allowed)}
    assert not upward, upward


def test_layered_settings_later_layers_win_key_by_key_never_by_truthiness():
    from harness.config.schema import ComponentSpec, PairSpec, StrategySpec, layered_settings

    pair = PairSpec("p", ComponentSpec("test/tiny_cnn"), ComponentSpec("test/tiny_images"),
                    train={"patience": None, "lr": 0.1, "epochs": 4})
    strat = StrategySpec("lora", "lora", params={"r": 8, "alpha": 16}, train={"deterministic": False, "epochs": 2})
    override = StrategySpec("lora", "lora", params={"r": 0}, train={"epochs": 1})
    defaults = {"deterministic": True, "patience": 5, "lr": 1.0, "batch_size": 7}
    train, params = layered_settings(defaults, pair, strat, override)
    assert train == {"deterministic": False, "patience": None, "lr": 0.1, "batch_size": 7, "epochs": 1}
    assert params == {"r": 0, "alpha": 16}
    # a layer left out adds nothing: a pretrain (no pair), the pair's own budget (no strategy)
    assert layered_settings(defaults, strategy=strat)[0] == {**defaults, "deterministic": False, "epochs": 2}
    assert layered_settings(defaults, pair) == ({**defaults, "patience": None, "lr": 0.1, "epochs": 4}, {})


def test_parse_component_gives_the_spec_or_every_issue_in_the_order_found():
    from harness.config.components import parse_component

    spec, issues = parse_component({"dataset": "test/tiny_images", "task": "image-classification"},
                                   ("tasks", 0, "target"), "target")
    assert issues == [] and spec is not None
    assert (spec.ref, spec.task) == ("test/tiny_images", "image-classification")
    spec, issues = parse_component({"model": "test/tiny_cnm", "colour": 1}, ("teacher",), "source")
    assert spec is None
    assert issues[0].startswith("teacher.model: unknown model 'tiny_cnm'. Did you mean: tiny_cnn?")
    assert issues[1].startswith("teacher.colour: unknown key 'colour'")
    # outside a pair's source a pretrain: block is refused, never kept unchecked (only the suite assembly parses one)
    _, issues = parse_component({"model": "test/tiny_cnn", "pretrain": {"target": {}}}, ("teacher",), "source")
    assert [i.split(":")[0] for i in issues] == ["teacher.pretrain"]


def test_a_misspelt_strategy_is_reported_once_not_again_where_a_pair_names_it(write_suite):
    # the pair's list and its overrides name the label correctly: the one cause is the entry's typo
    bad = TINY_SUITE.replace("task: image-classification}",
                             "task: image-classification}\n    strategies: [scratch, full_finetune]\n"
                             "    overrides: {full_finetune: {lr: 1e-4}}").replace("- full_finetune:", "- ful_finetune:")
    path = write_suite(bad)
    (err,) = errors_of(path)
    assert err.startswith(f"{path}:13: strategies[2].ful_finetune: Unknown strategy 'ful_finetune'."), err
    assert "Did you mean: full_finetune" in err


def test_a_misspelt_pair_label_is_still_reported_beside_an_unrelated_broken_entry(write_suite):
    bad = TINY_SUITE.replace("task: image-classification}",
                             "task: image-classification}\n    strategies: [scratch, full_finetun]").replace(
        "- linear_probe", "- linear_prob")
    text = "\n".join(errors_of(write_suite(bad)))
    assert "Unknown strategy 'linear_prob'" in text
    assert "pairs[0].strategies[1]: no strategy labelled 'full_finetun' in this suite. Did you mean: full_finetune?" in text
