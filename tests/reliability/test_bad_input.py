"""Bad input: hypothesis generates malformed suite files (bad YAML, wrong types, unknown keys,
out-of-range values, missing keys and files, incompatible pair and task, python tags, odd YAML).
Every one gets exit 2 from `harness validate` AND from `harness run`, a message naming
FILE:LINE: key, no traceback, and nothing written to the results directory.

Most examples call ``harness.cli.main`` in-process (milliseconds each); a handful go through real
``python -m harness`` processes. The count tried is printed and asserted (>= 1,000).
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import cli

from .support import run_cli

BASE = {
    "suite": "fuzz",
    "description": "a valid suite that each example breaks in one or more ways",
    "seeds": [0, 1],
    "defaults": {"epochs": 1, "batch_size": 8, "lr": 0.01, "warmup_ratio": 0.1},
    "pairs": [
        {"id": "cnn-img", "source": {"model": "test/tiny_cnn", "image_size": 16},
         "target": {"dataset": "test/tiny_images", "task": "image-classification", "val_fraction": 0.2},
         "train": {"batch_size": 4}},
        {"id": "bert-ner", "source": {"model": "test/tiny_bert", "max_length": 32},
         "target": {"dataset": "test/tiny_ner", "task": "token-classification"},
         "overrides": {"ft": {"lr": 0.001}}},
    ],
    "strategies": ["scratch", {"full_finetune": {"lr": 0.001, "label": "ft"}}],
}

# Mappings an unknown key can be slipped into (path as a tuple of keys/indices).
MAPPINGS = [(), ("defaults",), ("pairs", 0), ("pairs", 1), ("pairs", 0, "source"), ("pairs", 1, "target"),
            ("pairs", 0, "train"), ("pairs", 1, "overrides", "ft"), ("strategies", 1, "full_finetune")]
TRAIN_BLOCKS = [("defaults",), ("pairs", 0, "train"), ("strategies", 1, "full_finetune"),
                ("pairs", 1, "overrides", "ft")]
INT_FIELDS = ["epochs", "batch_size", "grad_accum", "eval_every", "max_steps", "num_workers"]
FLOAT_FIELDS = ["lr", "weight_decay", "warmup_ratio", "momentum", "timeout_s"]
LITERAL_FIELDS = {"optimizer": ("adamw", "sgd"), "scheduler": ("constant", "linear", "cosine"),
                  "precision": ("fp32", "bf16", "fp16"), "on_oom": ("fail", "shrink")}
OUT_OF_RANGE = {"epochs": [0, -1, -100], "batch_size": [0, -8], "grad_accum": [0, -2], "lr": [0, -0.1, -1e-3],
                "weight_decay": [-0.01], "warmup_ratio": [1, 1.5, -0.1], "momentum": [1, 2.0, -0.5],
                "eval_every": [0], "patience": [0, -3], "max_steps": [0, -1], "max_train_samples": [0],
                "max_eval_samples": [-5], "num_workers": [-1], "timeout_s": [0, -10],
                "device": ["gpu", "cuda:x", "tpu", "CPU"], "max_grad_norm": [0, -1.0]}
COMPONENT_OUT_OF_RANGE = [(("pairs", 0, "source", "image_size"), [4, 7, 65, 4096, -16]),
                          (("pairs", 1, "source", "max_length"), [0, 7, 129]),
                          (("pairs", 0, "target", "val_fraction"), [-0.5, 1.5, 2])]
REQUIRED = [("suite",), ("seeds",), ("pairs",), ("strategies",), ("pairs", 0, "id"), ("pairs", 1, "source"),
            ("pairs", 0, "target"), ("pairs", 0, "source", "model"), ("pairs", 1, "target", "dataset")]
BAD_YAML = ["key: [unclosed", "\tindented: with a tab", "a: 'unterminated", "{oops", "*undefined_alias",
            "x: !!python/object/apply:os.system ['touch PWNED']", "- - ]", "y: !!python/name:os.system",
            "z: !!python/object/new:builtins.dict {}", "w: !custom_tag 3", "? [complex, key]\n: value",
            "v: &a [*a]", "%TAG ! tag:x", "q: \"\\xZZ\"", "bad: @reserved"]


def non_numeric_text() -> st.SearchStrategy[str]:
    def is_number(t: str) -> bool:
        try:
            float(t)
        except ValueError:
            return False
        return True

    return st.text("abcdefghijklmnopqrstuvwxyz_ ", min_size=1, max_size=12).filter(lambda t: not is_number(t))


@dataclass
class Case:
    kind: str
    text: str | None  # None: the file does not exist
    path: str | None  # the key path one message must name ("<root>": the file as a whole; None: any)
    line: int | None = None  # the line it must name, where the test can tell independently


def dotted(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<root>"


def get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def dump(doc) -> str:
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True)


@st.composite
def unknown_key(draw) -> Case:
    doc = copy.deepcopy(BASE)
    where = draw(st.sampled_from(MAPPINGS))
    key = "x_" + draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=10))
    get(doc, where)[key] = draw(st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none()))
    text = dump(doc)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if re.match(rf"\s*(- )?{key}:", s))
    return Case("unknown key", text, dotted((*where, key)), line)


@st.composite
def wrong_type(draw) -> Case:
    doc = copy.deepcopy(BASE)
    choice = draw(st.sampled_from(["int", "float", "literal", "bool", "structure"]))
    junk = st.one_of(non_numeric_text(), st.lists(st.integers(), max_size=2), st.dictionaries(
        st.sampled_from("abc"), st.integers(), min_size=1, max_size=2))
    if choice == "structure":
        path, value = draw(st.sampled_from([
            (("seeds",), draw(st.one_of(non_numeric_text(), st.integers(), st.lists(non_numeric_text(), min_size=1)))),
            (("pairs",), draw(st.one_of(st.dictionaries(st.sampled_from("ab"), st.integers(), min_size=1),
                                        non_numeric_text(), st.integers()))),
            (("strategies",), draw(st.one_of(st.integers(), st.dictionaries(st.sampled_from("ab"), st.integers(),
                                                                            min_size=1)))),
            (("suite",), draw(st.one_of(st.integers(), st.lists(st.integers(), min_size=1)))),
            (("defaults",), draw(st.one_of(st.lists(st.integers(), min_size=1), non_numeric_text()))),
            (("pairs", 0, "id"), draw(st.one_of(st.integers(), st.lists(st.integers(), min_size=1)))),
            (("pairs", 1, "source"), draw(st.one_of(non_numeric_text(), st.integers(), st.lists(st.integers())))),
            (("pairs", 0, "target", "task"), draw(st.one_of(st.integers(), st.lists(st.integers(), min_size=1)))),
            (("description",), draw(st.one_of(st.integers(), st.lists(st.integers(), min_size=1)))),
            (("price_per_gpu_hour",), draw(non_numeric_text())),
            (("pairs", 1, "overrides"), draw(st.one_of(st.lists(st.integers(), min_size=1), non_numeric_text()))),
        ]))
    else:
        path = draw(st.sampled_from(TRAIN_BLOCKS))
        if choice == "int":
            field = draw(st.sampled_from(INT_FIELDS))
            value = draw(st.one_of(junk, st.floats(0.1, 1e3).filter(lambda f: f != int(f))))
        elif choice == "float":
            field, value = draw(st.sampled_from(FLOAT_FIELDS)), draw(junk)
        elif choice == "literal":
            field = draw(st.sampled_from(sorted(LITERAL_FIELDS)))
            value = draw(st.one_of(non_numeric_text().filter(lambda t: t not in LITERAL_FIELDS[field]),
                                   st.integers()))
        else:
            field, value = "deterministic", draw(st.one_of(st.lists(st.booleans(), min_size=1),
                                                           st.integers(2, 99), st.sampled_from(["maybe", "sure"])))
        path = (*path, field)
    parent = get(doc, path[:-1])
    parent[path[-1]] = value
    return Case("wrong type", dump(doc), dotted(path))


@st.composite
def out_of_range(draw) -> Case:
    doc = copy.deepcopy(BASE)
    if draw(st.booleans()):
        field = draw(st.sampled_from(sorted(OUT_OF_RANGE)))
        path = (*draw(st.sampled_from(TRAIN_BLOCKS)), field)
        value = draw(st.sampled_from(OUT_OF_RANGE[field]))
    else:
        path, values = draw(st.sampled_from(COMPONENT_OUT_OF_RANGE + [
            (("seeds",), [[-1], [0, 0], [], [0, -5]]), (("price_per_gpu_hour",), [-1, -0.01]),
            (("suite",), ["", "-lead", "a" * 65, "has space", "../up", "a/b", "x.y"]),
            (("pairs", 1, "id"), ["", "../../etc", "a/b", "dot.ted", "~home"])]))
        value = draw(st.sampled_from(values))
    get(doc, path[:-1])[path[-1]] = value
    return Case("out of range", dump(doc), dotted(path))


@st.composite
def missing(draw) -> Case:
    doc = copy.deepcopy(BASE)
    path = draw(st.sampled_from(REQUIRED))
    if draw(st.booleans()) and path in (("pairs",), ("strategies",)):
        get(doc, path[:-1])[path[-1]] = []  # present but empty
        return Case("missing", dump(doc), dotted(path))
    del get(doc, path[:-1])[path[-1]]
    # A missing key is reported on the mapping that lacks it (or the key itself where its value is checked).
    return Case("missing", dump(doc), dotted(path[:-1]) if len(path) > 1 else "<root>")


@st.composite
def incompatible(draw) -> Case:
    doc = copy.deepcopy(BASE)
    which = draw(st.integers(0, 7))
    if which == 0:  # image model, token task (that target provides it)
        doc["pairs"][1]["source"] = {"model": "test/tiny_cnn"}
        return Case("incompatible", dump(doc), "pairs[1].target.task")
    if which == 1:  # text model, image task
        doc["pairs"][0]["source"] = {"model": "test/tiny_bert"}
        return Case("incompatible", dump(doc), "pairs[0].target.task")
    if which == 2:  # a target that does not provide the task
        doc["pairs"][0]["target"]["task"] = "token-classification"
        return Case("incompatible", dump(doc), "pairs[0].target.task")
    if which == 3:  # a task nobody provides
        doc["pairs"][0]["target"]["task"] = draw(non_numeric_text())
        return Case("incompatible", dump(doc), "pairs[0].target.task")
    if which == 4:  # unknown namespaces / names
        key = draw(st.sampled_from([("source", "model"), ("target", "dataset")]))
        doc["pairs"][0][key[0]][key[1]] = draw(st.sampled_from(["nope/x", "tset/tiny_cnn", "tiny_cnn", "/abs", ""]))
        return Case("incompatible", dump(doc), f"pairs[0].{key[0]}.{key[1]}")
    if which == 5:  # unknown strategy
        doc["strategies"].append(draw(st.sampled_from(["ful_finetune", "lora2", "linearprobe", "x"])))
        return Case("incompatible", dump(doc), "strategies[2]")
    if which == 6:  # an override naming no strategy label
        doc["pairs"][1]["overrides"]["ft" + draw(st.text("tu", min_size=1, max_size=3))] = {"lr": 0.1}
        return Case("incompatible", dump(doc), "pairs[1].overrides")
    # duplicates: pair ids or strategy labels
    if draw(st.booleans()):
        doc["pairs"][1]["id"] = "cnn-img"
        return Case("incompatible", dump(doc), "pairs[1].id")
    doc["strategies"].append({"scratch": {"label": "ft"}})
    return Case("incompatible", dump(doc), "strategies[2]")


@st.composite
def bad_yaml(draw) -> Case:
    lines = dump(BASE).splitlines()
    fragment = draw(st.sampled_from(BAD_YAML))
    at = draw(st.integers(0, len(lines)))
    indent = " " * draw(st.sampled_from([0, 2, 4])) if not fragment.startswith("%") else ""
    prev = lines[at - 1] if at else ""
    prev_indent = len(prev) - len(prev.lstrip())
    if prev and not prev.rstrip().endswith(":") and len(indent) > prev_indent:
        # deeper than a line holding a plain scalar continues that scalar: still valid YAML
        indent = " " * prev_indent
    lines[at:at] = [indent + f for f in fragment.splitlines()]
    return Case("bad yaml", "\n".join(lines) + "\n", None)  # where it lands decides which key it breaks


@st.composite
def python_tag(draw) -> Case:
    doc = copy.deepcopy(BASE)
    where = draw(st.sampled_from([("description",), ("defaults", "lr"), ("pairs", 0, "id"), ("suite",)]))
    marker = "__TAG__"
    get(doc, where[:-1])[where[-1]] = marker
    tag = draw(st.sampled_from(["!!python/object/apply:os.system ['touch PWNED']", "!!python/name:os.system",
                                "!!python/object/new:builtins.list [[1]]", "!!python/tuple [1, 2]",
                                "!!python/module:os"]))
    text = dump(doc).replace(marker, tag)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "!!python/" in s)
    return Case("python tag", text, "<root>", line)


@st.composite
def odd_yaml(draw) -> Case:
    """Legal YAML that is no legal suite: non-string keys, dates, nulls, aliases, documents."""
    doc = copy.deepcopy(BASE)
    which = draw(st.integers(0, 5))
    text = dump(doc)
    if which == 0:
        text = text.replace("defaults:\n", "defaults:\n  1: 2\n  null: 3\n  true: 4\n", 1)
        return Case("odd yaml", text, "defaults")
    if which == 1:
        text = text.replace("seeds:\n- 0\n- 1\n", "seeds:\n- 2001-12-14\n- 1\n", 1)
        return Case("odd yaml", text, "seeds")
    if which == 2:
        return Case("odd yaml", text.replace("suite: fuzz", "suite: null", 1), "suite")
    if which == 3:
        return Case("odd yaml", text + "---\nsuite: second\n", "<root>")
    if which == 4:
        return Case("odd yaml", draw(st.sampled_from(["", "# only a comment\n", "[]\n", "42\n", "~\n", "- a\n"])),
                    "<root>")
    return Case("odd yaml", text.replace("pairs:\n", "pairs: &p\n", 1) + "extra: *p\n", "extra")


MISSING_FILE = st.builds(lambda: Case("missing file", None, "<root>", 1))
ALL = st.one_of(unknown_key(), wrong_type(), out_of_range(), missing(), incompatible(), bad_yaml(), python_tag(),
                odd_yaml(), MISSING_FILE)
ISSUE = re.compile(r"^(?:error: )?(?P<file>.+?):(?P<line>\d+): (?P<path>\S+): (?P<msg>.+)$")


def check_rejected(code: int, out: str, err: str, case: Case, file: Path, results: Path) -> None:
    where = f"{case.kind}: {case.path}\n--- file ---\n{case.text}\n--- stderr ---\n{err}"
    assert code == 2, where
    assert "Traceback" not in err + out, where
    issues = [m for m in map(ISSUE.match, err.splitlines()) if m]
    assert issues, where
    assert all(m["file"] == str(file) for m in issues), where
    n_lines = (case.text or "").count("\n") + 1
    assert all(1 <= int(m["line"]) <= n_lines + 1 for m in issues), where
    named = [m for m in issues if case.path is None or m["path"] == case.path
             or m["path"].startswith(case.path + ".") or m["path"].startswith(case.path + "[")]
    assert named, f"no issue names {case.path!r}\n{where}"
    if case.line is not None:
        assert any(int(m["line"]) == case.line for m in named), f"line {case.line} not named\n{where}"
    assert not results.exists(), where  # nothing written


def test_base_suite_is_valid(tmp_path, capsys):
    f = tmp_path / "base.yaml"
    f.write_text(dump(BASE))
    assert cli.main(["validate", str(f)]) == 0, capsys.readouterr().err


def test_over_1000_malformed_suites_rejected_with_file_line_key(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a python tag that ran would leave ./PWNED here
    tried: Counter[str] = Counter()
    results = tmp_path / "results"

    @settings(max_examples=1100, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(case=ALL)
    def check(case: Case) -> None:
        file = tmp_path / f"suite-{sum(tried.values())}.yaml"
        if case.text is not None:
            file.write_text(case.text)
        for command in (["validate", str(file)], ["run", str(file), "--results", str(results)]):
            capsys.readouterr()
            code = cli.main(command)
            out, err = capsys.readouterr()
            check_rejected(code, out, err, case, file, results)
        tried[case.kind] += 1

    check()
    total = sum(tried.values())
    with capsys.disabled():
        print(f"\nmalformed suites tried: {total} ({', '.join(f'{k}: {v}' for k, v in sorted(tried.items()))}); "
              "each through `validate` and `run`")
    assert total >= 1000
    assert len(tried) == 9  # every kind was generated
    assert not (tmp_path / "PWNED").exists()


@settings(max_examples=1, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(cases=st.tuples(unknown_key(), python_tag(), bad_yaml(), incompatible(), MISSING_FILE))
def test_real_processes_reject_too(tmp_path, cases):
    """The same contract through `python -m harness` (the installed entry point): one `validate` process
    over one file of each kind (every error of every file at once), then `run` on two of them."""
    files = []
    for i, case in enumerate(cases):
        files.append(tmp_path / f"suite-{i}.yaml")
        if case.text is not None:
            files[-1].write_text(case.text)
    results = tmp_path / "results"
    proc = run_cli("validate", *map(str, files), cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"error(s) in {len(files)} file(s)" in proc.stderr
    for case, file in zip(cases, files, strict=True):
        own = "\n".join(line for line in proc.stderr.splitlines() if line.startswith(f"{file}:"))
        check_rejected(proc.returncode, "", own, case, file, results)
    for case, file in list(zip(cases, files, strict=True))[1:4:2]:  # python tag, incompatible
        proc = run_cli("run", str(file), "--results", str(results), cwd=tmp_path, timeout=300)
        check_rejected(proc.returncode, proc.stdout, proc.stderr, case, file, results)
    assert not (tmp_path / "PWNED").exists()
