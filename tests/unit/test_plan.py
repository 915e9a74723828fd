"""Plan expansion: the matrix, the layering of settings, stable run_ids."""

from __future__ import annotations

from types import SimpleNamespace

from harness.plan import SMOKE_STEPS, expand
from harness.suite import load_suite
from tests.conftest import TINY_SUITE


def test_matrix_order_and_size(write_suite):
    runs = expand(load_suite(write_suite(TINY_SUITE)))
    assert len(runs) == 1 * 3 * 2
    assert [(r.label, r.seed) for r in runs] == [
        ("scratch", 0), ("scratch", 1), ("linear_probe", 0), ("linear_probe", 1), ("full_finetune", 0), ("full_finetune", 1)]
    assert len({r.run_id for r in runs}) == len(runs)
    assert runs[0].run_id.startswith("cnn-images.scratch.s0-")


def test_run_id_is_stable_and_tracks_the_resolved_config(write_suite):
    a = [r.run_id for r in expand(load_suite(write_suite(TINY_SUITE, "a.yaml")))]
    # Same content with keys reordered and a comment: same ids.
    reordered = TINY_SUITE.replace("defaults: {epochs: 1, batch_size: 16, lr: 1e-2}",
                                   "# comment\ndefaults: {lr: 0.01, batch_size: 16, epochs: 1}")
    assert [r.run_id for r in expand(load_suite(write_suite(reordered, "b.yaml")))] == a
    # A changed setting: the affected runs get new ids, the others keep theirs.
    changed = TINY_SUITE.replace("lr: 3e-3", "lr: 4e-3")
    c = [r.run_id for r in expand(load_suite(write_suite(changed, "c.yaml")))]
    assert c[:4] == a[:4] and c[4:] != a[4:]


def test_layering_defaults_pair_strategy_override(write_suite):
    text = TINY_SUITE.replace(
        "task: image-classification}",
        "task: image-classification}\n    train: {lr: 5e-2, epochs: 2}\n    overrides: {full_finetune: {epochs: 4}}")
    runs = {r.label: r for r in expand(load_suite(write_suite(text)))}
    assert runs["scratch"].train["lr"] == 5e-2 and runs["scratch"].train["epochs"] == 2  # pair over defaults
    assert runs["full_finetune"].train["lr"] == 3e-3  # strategy over pair
    assert runs["full_finetune"].train["epochs"] == 4  # override over strategy
    assert runs["scratch"].train["batch_size"] == 16  # defaults still apply


def test_smoke_caps_every_cell_and_changes_ids(write_suite):
    spec = load_suite(write_suite(TINY_SUITE))
    full, smoke = expand(spec), expand(spec, smoke=True)
    assert all(r.smoke and r.train["max_steps"] == SMOKE_STEPS and r.train["epochs"] == 1 for r in smoke)
    assert not {r.run_id for r in full} & {r.run_id for r in smoke}


def test_config_holds_version_and_full_params(write_suite):
    run = expand(load_suite(write_suite(TINY_SUITE)))[0]
    cfg = run.config()
    assert cfg["harness_version"]
    assert cfg["train"]["optimizer"] == "adamw"  # defaults are written out, not implied
    assert cfg["source"] == {"model": "test/tiny_cnn"}


def test_placement_is_not_identity(write_suite):
    """device, DataLoader workers, timeout and on_oom say where and how a run executes: changing
    them keeps every run_id and compute_key (a suite moved to another GPU reuses its records);
    the record still says where it ran."""
    a = expand(load_suite(write_suite(TINY_SUITE, "a.yaml")))
    moved = TINY_SUITE.replace("defaults: {epochs: 1, batch_size: 16, lr: 1e-2}",
                               "defaults: {epochs: 1, batch_size: 16, lr: 1e-2, device: cpu, num_workers: 2, "
                               "timeout_s: 600, on_oom: shrink}")
    b = expand(load_suite(write_suite(moved, "b.yaml")))
    assert [r.run_id for r in b] == [r.run_id for r in a]
    assert [r.compute_key for r in b] == [r.compute_key for r in a]
    cfg = b[0].config()
    assert cfg["placement"] == {"device": "cpu", "num_workers": 2, "timeout_s": 600, "on_oom": "shrink",
                                "gpu_share": 1.0}
    assert "device" not in cfg["train"] and "timeout_s" not in cfg["train"]


def test_a_record_written_with_placement_among_its_train_settings_keeps_its_computation(write_suite):
    """Records written before placement was split off carry device etc. in config.train: they
    still match the run that computes the same thing."""
    from harness.executors.base import computed_key
    from harness.records import RunRecord

    run = expand(load_suite(write_suite(TINY_SUITE)))[0]
    old = run.config()
    old["train"] = {**old["train"], **old.pop("placement")}
    record = RunRecord(run_id="old", suite="s", pair=run.pair, strategy=run.strategy, label=run.label, seed=run.seed,
                       status="ok", config={**old, "notes": {}}, started_at="t", finished_at="t")
    assert computed_key(record) == run.compute_key
    changed = dict(old, train={**old["train"], "lr": 0.5})
    assert computed_key(record.model_copy(update={"config": changed})) != run.compute_key


def test_several_slots_start_the_runs_others_wait_on_first():
    from harness.executors.base import critical_first

    def spec(run_id, *deps):
        return SimpleNamespace(run_id=run_id, depends_on=tuple(deps))

    # plan order: two plain finals, then a teacher whose student searches (trial → final)
    runs = [spec("a"), spec("b"), spec("teacher"), spec("trial", "teacher"), spec("final", "trial"),
            spec("c")]
    order = [r.run_id for r in critical_first(runs)]
    assert order == ["teacher", "trial", "a", "b", "final", "c"]
    # a dependency listed after its dependant is still counted
    runs = [spec("final", "trial"), spec("x"), spec("trial")]
    assert [r.run_id for r in critical_first(runs)] == ["trial", "final", "x"]
