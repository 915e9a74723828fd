"""Security: YAML through the safe loader only; no eval/exec of suite strings; names that would escape
the results directory are rejected at validate time; trust_remote_code is off unless the suite sets
it (and then the record says so); records never contain environment secrets."""

from __future__ import annotations

import ast
import json
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import harness
from harness import cli
from harness.errors import ConfigError, HarnessError
from harness.plan import expand
from harness.records import record_path, suite_dir
from harness.run import cost
from harness.run.execute import execute
from harness.suite import load_suite

PACKAGE = Path(harness.__file__).resolve().parent

SUITE = """\
suite: {suite}
seeds: [0]
defaults: {{epochs: 1, batch_size: 8, max_steps: 1, max_train_samples: 16, max_eval_samples: 8}}
pairs:
  - id: {pair}
    source: {{model: test/tiny_cnn}}
    target: {{dataset: test/tiny_images, task: image-classification}}
strategies:
  - scratch: {{label: {label}}}
"""


@pytest.mark.parametrize("tag", [
    "!!python/object/apply:os.system ['touch PWNED']",
    "!!python/object/new:os.system ['touch PWNED']",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/object:harness.config.schema.SuiteSpec {}",
])
def test_python_tags_are_rejected_and_never_run(tmp_path, monkeypatch, capsys, tag):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "evil.yaml"
    f.write_text(SUITE.format(suite="s", pair="p", label="l") + f"description: {tag}\n")
    for command in (["validate", str(f)], ["run", str(f), "--results", str(tmp_path / "r")]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert re.search(rf"{re.escape(str(f))}:10: <root>: invalid YAML: could not determine a constructor", err), err
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "r").exists()


def test_an_alias_bomb_is_rejected_quickly(tmp_path, capsys):
    """A 'billion laughs' file (10^9 nodes once aliases expand) is refused, not expanded."""
    lines = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    f = tmp_path / "bomb.yaml"
    f.write_text(SUITE.format(suite="s", pair="p", label="l") + "\n".join(lines) + "\n")
    t0 = time.perf_counter()
    assert cli.main(["validate", str(f)]) == 2
    assert time.perf_counter() - t0 < 30  # a bound against hanging, not a speed claim
    assert "YAML nodes once aliases are expanded" in capsys.readouterr().err


# Reviewed exceptions: (file, finding) → why it is acceptable. Keep this short (CIFAR's pickles go
# through a restricted unpickler, harness/targets/vision/cifar.py: BatchUnpickler, not pickle.load).
ALLOWED: dict[tuple[str, str], str] = {
    ("harness/suite_schema.py", "yaml.load without SafeLoader"):
        "Yaml12Loader subclasses SafeLoader and adds only a float resolver (YAML 1.2 numbers)",
}


def unsafe_calls(package: Path) -> list[tuple[str, int, str]]:
    """(file, line, finding) for each eval/exec/compile, unsafe YAML/pickle/torch load or shell=True."""
    banned_calls = {"eval", "exec", "compile", "__import__"}
    banned_attrs = {"unsafe_load", "full_load", "UnsafeLoader", "FullLoader", "load_all"}
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = str(path.relative_to(package.parent))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            line = getattr(node, "lineno", 0)
            if isinstance(node, ast.Attribute) and node.attr in banned_attrs and \
                    isinstance(node.value, ast.Name) and node.value.id == "yaml":
                found.append((rel, line, f"yaml.{node.attr}"))
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            name = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else ""
            owner = fn.value.id if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) else ""
            kwargs = {k.arg: k.value for k in node.keywords}
            if isinstance(fn, ast.Name) and name in banned_calls:
                found.append((rel, line, f"{name}()"))
            if owner == "yaml" and name == "load":
                loader = kwargs.get("Loader")
                if not (isinstance(loader, ast.Attribute) and loader.attr in ("SafeLoader", "CSafeLoader")):
                    found.append((rel, line, "yaml.load without SafeLoader"))
            if owner == "pickle" and name in ("load", "loads"):
                found.append((rel, line, f"pickle.{name}"))
            if owner == "torch" and name == "load":
                wo = kwargs.get("weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    found.append((rel, line, "torch.load without weights_only=True"))
            shell = kwargs.get("shell")
            if isinstance(shell, ast.Constant) and shell.value is True:
                found.append((rel, line, "subprocess with shell=True"))
    return sorted(found)


def test_no_eval_exec_or_unsafe_deserialisation_in_the_package():
    """An AST scan of harness/: suite strings can only ever be data."""
    assert len(list(PACKAGE.rglob("*.py"))) > 20
    found = unsafe_calls(PACKAGE)
    assert [f for f in found if (f[0], f[2]) not in ALLOWED] == []
    assert set(ALLOWED) <= {(f[0], f[2]) for f in found}, "an exception no longer needed: remove it"


def test_the_scan_would_catch_a_violation(tmp_path):
    """The AST scan above is not vacuous: each banned form planted in a module is reported."""
    fake = tmp_path / "harness"
    fake.mkdir()
    (fake / "bad.py").write_text("import yaml, torch, pickle, subprocess\neval('1')\nexec('x')\nyaml.load(s)\n"
                                 "yaml.load(s, Loader=yaml.FullLoader)\ntorch.load(p)\npickle.loads(b)\n"
                                 "subprocess.run('ls', shell=True)\nyaml.load(s, Loader=yaml.SafeLoader)\n"
                                 "torch.load(p, weights_only=True)\n")
    assert [(line, what) for _, line, what in unsafe_calls(fake)] == [
        (2, "eval()"), (3, "exec()"), (4, "yaml.load without SafeLoader"), (5, "yaml.FullLoader"),
        (5, "yaml.load without SafeLoader"), (6, "torch.load without weights_only=True"), (7, "pickle.loads"),
        (8, "subprocess with shell=True")]


@pytest.mark.parametrize(("field", "value"), [
    ("pair", "../x"), ("pair", ".."), ("pair", "a/b"), ("pair", "/abs"), ("pair", ".hidden"), ("pair", "x\\\\y"),
    ("label", "../../etc"), ("label", "a/b"), ("label", "."), ("label", "~root"),
    ("suite", "../outside"), ("suite", "a/../../b"), ("suite", "/tmp/x"), ("suite", "..."),
])
def test_escaping_names_are_rejected_at_validate_time(tmp_path, capsys, field, value):
    values = {"suite": "ok", "pair": "p", "label": "l", field: json.dumps(value)}
    f = tmp_path / "s.yaml"
    f.write_text(SUITE.format(**values))
    assert cli.main(["validate", str(f)]) == 2
    key = {"suite": "suite", "pair": r"pairs\[0\]\.id", "label": r"strategies\[0\]\.scratch\.label"}[field]
    assert re.search(rf"{re.escape(str(f))}:\d+: {key}: .*names files", capsys.readouterr().err)


def paths_stay_inside(tmp_path, suite: str, pair: str, label: str) -> bool:
    """False when validate rejects the names; else assert every record path and the suite directory
    resolve inside the results directory, and return True."""
    f = tmp_path / "s.yaml"
    f.write_text(SUITE.format(suite=json.dumps(suite), pair=json.dumps(pair), label=json.dumps(label)))
    try:
        spec = load_suite(f)
    except ConfigError:
        return False
    results = (tmp_path / "results").resolve()
    for smoke in (False, True):
        directory = suite_dir(results, spec.suite, smoke)
        assert directory.resolve().parent == results
        for run in expand(spec, smoke=smoke):
            assert record_path(directory, run.run_id).resolve().parent == directory.resolve()
    return True


NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", fullmatch=True)  # what validate accepts


def test_names_valid_by_construction_stay_inside_the_results_dir(tmp_path):
    """Every example is a name validate accepts (so every one reaches the path assertions, counted);
    names that look like escapes but are legal (``-``, ``x--``, ``0_``) among them."""
    checked = []

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(suite=NAME, pair=NAME, label=NAME)
    def one(suite, pair, label):
        assert paths_stay_inside(tmp_path, suite, pair, label), (suite, pair, label)
        checked.append(suite)

    one()
    assert len(checked) >= 300


def test_any_text_as_a_name_is_rejected_or_stays_inside(tmp_path):
    """Arbitrary strings: validate rejects them, or they stay inside; both outcomes are counted so
    the test says how many reached the path assertions (most arbitrary text is rejected)."""
    outcomes = []

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(suite=st.text(min_size=1, max_size=20), pair=st.text(min_size=1, max_size=20),
           label=st.text(min_size=1, max_size=20))
    def one(suite, pair, label):
        outcomes.append(paths_stay_inside(tmp_path, suite, pair, label))

    one()
    assert len(outcomes) >= 300 and any(outcomes) and not all(outcomes)


@pytest.mark.parametrize("bad", ["../x", "a/b", "..", "", ".lock", "x/../../y", "/etc/passwd"])
def test_record_path_and_suite_dir_refuse_escapes(tmp_path, bad):
    with pytest.raises(HarnessError):
        record_path(tmp_path, bad)
    with pytest.raises(HarnessError):
        suite_dir(tmp_path, bad)


@pytest.fixture(scope="module")
def saved_tiny_bert(tmp_path_factory) -> Path:
    """A tiny BERT saved with save_pretrained() — what `hf/<local dir>` loads offline."""
    from transformers import BertConfig, BertModel

    from harness.sources.tiny import tiny_tokenizer

    out = tmp_path_factory.mktemp("tiny_bert_hf")
    tok = tiny_tokenizer()
    BertModel(BertConfig(vocab_size=len(tok.get_vocab()) + 8, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)).save_pretrained(out)
    tok.save_pretrained(out)
    return out


HF_SUITE = """\
suite: hf-trust
seeds: [0]
defaults: {{epochs: 1, batch_size: 8, max_steps: 1, max_train_samples: 16, max_eval_samples: 8, device: cpu}}
pairs:
  - id: local-bert
    source: {{model: "hf/{path}"{extra}}}
    target: {{dataset: test/tiny_ner, task: token-classification}}
strategies:
  - full_finetune
"""


@pytest.mark.parametrize("setting", [None, False, True])
def test_trust_remote_code_off_unless_the_suite_sets_it_and_recorded(tmp_path, saved_tiny_bert, monkeypatch, setting):
    import transformers

    seen = []
    for cls_name in ("AutoModel", "AutoConfig", "AutoTokenizer"):
        cls = getattr(transformers, cls_name)
        real = cls.from_pretrained.__func__

        def spy(klass, *args, _real=real, _name=cls_name, **kwargs):
            seen.append((_name, kwargs.get("trust_remote_code")))
            return _real(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    extra = "" if setting is None else f", trust_remote_code: {str(setting).lower()}"
    f = tmp_path / "hf.yaml"
    f.write_text(HF_SUITE.format(path=saved_tiny_bert, extra=extra))
    (run,) = expand(load_suite(f))
    rec = execute(run)
    assert rec.status == "ok", rec.error
    expected = bool(setting)
    assert rec.config["notes"]["source_info"]["trust_remote_code"] is expected
    assert {"AutoModel", "AutoConfig", "AutoTokenizer"} <= {name for name, _ in seen}
    assert all(flag is expected for _, flag in seen), seen


SECRETS = {
    "HF_TOKEN": "hf_SENTINEL_aaaa1111", "HUGGING_FACE_HUB_TOKEN": "hf_SENTINEL_bbbb2222",
    "AWS_SECRET_ACCESS_KEY": "SENTINEL_aws_cccc3333", "AWS_ACCESS_KEY_ID": "SENTINEL_AKIA4444",
    "GITHUB_TOKEN": "ghp_SENTINEL_dddd5555", "HARNESS_API_KEY": "SENTINEL_eeee6666",
    "HARNESS_DB_PASSWORD": "SENTINEL_ffff7777", "HF_ENDPOINT": "https://bob:SENTINEL_gggg8888@hub.example.com",
    "TRANSFORMERS_AUTH": "SENTINEL_hhhh9999",
}


def test_records_never_contain_environment_secrets(tmp_path, monkeypatch, capsys):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # kept verbatim: results-relevant, not a secret
    monkeypatch.setattr(cost, "_ENV_CACHE", None)  # the env block is gathered once per process
    f = tmp_path / "s.yaml"
    f.write_text(SUITE.format(suite="sec", pair="p", label="l"))
    assert cli.main(["run", str(f), "--results", str(tmp_path / "r"), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    (record,) = (tmp_path / "r" / "sec").glob("*.json")
    text = record.read_text()
    for value in SECRETS.values():
        assert "SENTINEL" in value
    assert "SENTINEL" not in text + out + err
    env = json.loads(text)["env"]["env"]
    assert env["HF_TOKEN"] == env["HARNESS_API_KEY"] == env["HARNESS_DB_PASSWORD"] == "<redacted>"
    assert env["HF_ENDPOINT"] == "https://<redacted>@hub.example.com" and env["HF_HUB_OFFLINE"] == "1"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "GITHUB_TOKEN" not in env  # not results-relevant: not kept


def test_a_symlinked_suite_directory_cannot_send_records_outside_the_results_dir(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(SUITE.format(suite="ok", pair="p", label="l"))
    results, elsewhere = tmp_path / "results", tmp_path / "elsewhere"
    results.mkdir()
    elsewhere.mkdir()
    (results / "ok").symlink_to(elsewhere, target_is_directory=True)
    assert cli.main(["run", str(f), "--results", str(results), "--no-progress"]) != 0
    assert "is a symlink or leads outside the results directory" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


# --- CIFAR's pickles: exact names only, not "anything from numpy" -------------------------------------


class _Reduce:
    """Pickles as ``fn(*args)``: what a tampered file can ask an unpickler to call."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _numpy_gadgets(tmp_path: Path, marker: Path) -> dict[str, bytes]:
    """Pickles that run code through a numpy global a real CIFAR file never names."""
    import pickle

    import numpy as np
    from numpy.testing._private import utils as np_testing

    # np.load(path, None, True) unpickles a second file without any restriction
    inner = tmp_path / "inner.pkl"
    inner.write_bytes(pickle.dumps(_Reduce(open, str(marker), "w")))
    return {"numpy.testing._private.utils.runstring":
            pickle.dumps({b"data": _Reduce(np_testing.runstring, f"open({str(marker)!r}, 'w').close()", {})},
                         protocol=3),
            "numpy.load": pickle.dumps({b"data": _Reduce(np.load, str(inner), None, True)}, protocol=3)}


@pytest.mark.parametrize("gadget", ["numpy.testing._private.utils.runstring", "numpy.load"])
def test_a_cifar_batch_calling_a_numpy_gadget_is_refused_and_a_real_one_loads(tmp_path, monkeypatch, gadget):
    from harness.registry import SOURCES, TARGETS
    from tests.unit.test_vision_targets import write_cifar10

    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data-root"))  # the decode cache, never ~/.cache
    tiny = SOURCES.get("test").build("tiny_cnn", {}, pretrained=True)
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    real = batch.read_bytes()
    payload = _numpy_gadgets(tmp_path, marker)[gadget]
    module, name = gadget.rsplit(".", 1)
    assert f"c{module}\n{name}\n".encode() in payload  # the pickle names the gadget itself
    batch.write_bytes(payload)

    def load():
        return TARGETS.get("torchvision").load("cifar10", {"data_dir": str(tmp_path), "download": False},
                                               "image-classification", tiny)

    with pytest.raises(HarnessError, match=rf"data_batch_2: not a CIFAR batch \(UnpicklingError: refuses {re.escape(gadget)}"):
        load()
    assert not marker.exists()
    batch.write_bytes(real)  # the same folder in CIFAR's real format (numpy arrays inside) loads
    assert {k: len(s) for k, s in load().splits.items()} == {"train": 54, "val": 6, "test": 12}
