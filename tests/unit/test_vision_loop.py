"""The vision data path through the generic loop: CIFAR files → ``harness run --data-dir`` →
records; channels_last; the optional torch.compile."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
import torch

from harness.cli import main
from harness.config.schema import TrainConfig
from harness.registry import SOURCES, STRATEGIES, TARGETS, TASKS
from harness.run.loop import fit
from harness.sources.nets import TransferModel
from harness.targets.vision.common import data_root
from tests.unit.test_vision_targets import write_cifar10


def test_run_cifar_suite_with_data_dir(tmp_path, monkeypatch, capsys):
    write_cifar10(tmp_path / "data", per_batch=16)
    suite = tmp_path / "v.yaml"
    suite.write_text(textwrap.dedent("""\
        suite: v
        seeds: [0]
        defaults: {epochs: 1, batch_size: 16, channels_last: true, max_steps: 2}
        pairs:
          - id: tiny-cifar10
            source: {model: test/tiny_cnn, image_size: 16}
            target: {dataset: torchvision/cifar10, task: image-classification, download: false}
        strategies: [full_finetune, linear_probe]
        """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_DATA_DIR", "set-by-the-test")  # `run --data-dir` wins over it
    rc = main(["run", str(suite), "--results", "res", "--data-dir", str(tmp_path / "data"), "--no-progress"])
    assert rc == 0, capsys.readouterr()
    records = [json.loads(p.read_text()) for p in (tmp_path / "res").rglob("*.json")]
    records = [r for r in records if "run_id" in r]
    assert sorted(r["strategy"] for r in records) == ["full_finetune", "linear_probe"]
    for r in records:
        assert r["status"] == "ok", r["error"]
        assert r["split"]["used"] == {"train": 72, "val": 8, "test": 16}
        assert r["split"]["preprocessing"]["augment"] == {"random_crop_padding": 4, "hflip": True}
        assert r["env"]["env"]["HARNESS_DATA_DIR"] == str((tmp_path / "data").resolve())
    ft = next(r for r in records if r["strategy"] == "full_finetune")
    assert ft["cost"]["steps"] == 2 and ft["config"]["train"]["channels_last"] is True


def test_data_dir_reaches_the_target_in_the_options_and_leaves_the_environment_as_it_was(tmp_path, monkeypatch,
                                                                                          capsys):
    """`--data-dir` travels in the execution options: the target reads its files from there, while
    the process's environment (``main`` is called in-process here) is exactly what it was."""
    write_cifar10(tmp_path / "data", per_batch=16)
    suite = tmp_path / "v.yaml"
    suite.write_text(textwrap.dedent("""\
        suite: v
        seeds: [0]
        defaults: {epochs: 1, batch_size: 16, max_steps: 1}
        pairs:
          - id: tiny-cifar10
            source: {model: test/tiny_cnn, image_size: 16}
            target: {dataset: torchvision/cifar10, task: image-classification, download: false}
        strategies: [full_finetune]
        """))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "empty"))  # no CIFAR here: only --data-dir has it
    # what a harness-owned process sets for itself when unset (own_process: setdefault), set already,
    # so any other change to the environment shows
    for k, v in {"TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
                 "HF_HUB_DISABLE_PROGRESS_BARS": "1"}.items():
        monkeypatch.setenv(k, v)
    before = dict(os.environ)
    rc = main(["run", str(suite), "--results", "res", "--data-dir", str(tmp_path / "data"), "--no-progress"])
    assert rc == 0, capsys.readouterr()
    assert dict(os.environ) == before
    assert data_root(None) == tmp_path / "empty"  # the run's data root ended with the run
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "res").rglob("*.json")]
    assert record["status"] == "ok", record["error"]
    assert record["split"]["used"] == {"train": 72, "val": 8, "test": 16}
    assert record["env"]["env"]["HARNESS_DATA_DIR"] == str((tmp_path / "data").resolve())


def _tiny_run(tmp_path, **train):
    write_cifar10(tmp_path, per_batch=8)
    torch.manual_seed(0)
    backbone = SOURCES.get("test").build("tiny_cnn", {}, pretrained=True)
    data = TARGETS.get("torchvision").load("cifar10", {"data_dir": str(tmp_path)}, "image-classification", backbone)
    model = TransferModel(backbone, len(data.label_names))
    cfg = TrainConfig(**{"epochs": 1, "batch_size": 8, "max_steps": 2, **train})
    strategy = STRATEGIES.get("full_finetune")(STRATEGIES.get("full_finetune").Params(), cfg)
    strategy.prepare(model)
    return model, fit(model, data, TASKS.get("image-classification"), strategy, cfg, torch.device("cpu"), seed=0)


def test_channels_last_reaches_model_and_batches(tmp_path):
    model, result = _tiny_run(tmp_path, channels_last=True)
    conv = model.backbone.body["stem"][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert result.steps == 2 and result.flops_per_step and result.flops_per_step > 0


def test_same_seed_same_training_with_augmentation(tmp_path):
    a, ra = _tiny_run(tmp_path / "a")
    b, rb = _tiny_run(tmp_path / "b")
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_resident_bf16_channels_last(tmp_path):
    write_cifar10(tmp_path, per_batch=8)
    backbone = SOURCES.get("test").build("tiny_cnn", {}, pretrained=True)
    data = TARGETS.get("torchvision").load("cifar10", {"data_dir": str(tmp_path)}, "image-classification", backbone)
    model = TransferModel(backbone, len(data.label_names))
    cfg = TrainConfig(epochs=1, batch_size=8, max_steps=2, precision="bf16", channels_last=True)
    strategy = STRATEGIES.get("full_finetune")(STRATEGIES.get("full_finetune").Params(), cfg)
    strategy.prepare(model)
    from harness.run.loop import place

    placed = place(data, torch.device("cuda"))
    assert placed.splits["train"].images.is_cuda  # resident: batches are built on the GPU
    batch = next(placed.splits["train"].batches(8, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert batch["pixel_values"].is_cuda and batch["labels"].is_cuda
    result = fit(model, data, TASKS.get("image-classification"), strategy, cfg, torch.device("cuda"), seed=0)
    assert result.steps == 2 and result.precision == "bf16"


def test_placing_splits_on_a_device_keeps_their_content_keys_and_origins():
    """A split that moves (``to_device`` returns a new object) must not shed the example keys the
    leak check and the record's fingerprints read, nor the pools the splits came from."""
    import numpy as np

    from harness.run.loop import place
    from harness.targets.base import TargetData

    class Moving:
        def to_device(self, device, num_workers=0):
            return Moving()

    keys = {"train": np.array(["a", "b"]), "test": np.array(["c"])}
    data = TargetData(["x"], {"train": Moving(), "test": Moving()}, {"seed": 0}, keys=keys,
                      origins={"train": "train", "test": "test"})
    placed = place(data, torch.device("cpu"))
    assert placed is not data and placed.splits["train"] is not data.splits["train"]
    assert placed.keys is keys and placed.origins == {"train": "train", "test": "test"}
    assert placed.split_info == {"seed": 0} and placed.label_names == ["x"]


def test_evaluation_counts_the_labels_the_predictions_use():
    """A model stuck on one class scores whatever that class's share is; the metrics say it used
    one label of three, which the report marks as collapsed."""
    from harness.run.loop import evaluate
    from harness.targets.base import TensorSplit

    class Constant(torch.nn.Module):
        def forward(self, batch):
            logits = torch.zeros(len(batch["labels"]), 3)
            logits[:, 1] = 1.0
            return {"logits": logits}

    split = TensorSplit({"features": torch.zeros(6, 2), "labels": torch.tensor([0, 1, 2, 1, 1, 0])})
    out = evaluate(Constant(), split, TASKS.get("image-classification"), ["a", "b", "c"],
                   torch.device("cpu"), batch_size=4, precision="fp32")
    assert out["accuracy"] == 0.5 and out["predicted_classes"] == 1 and out["gold_classes"] == 3
