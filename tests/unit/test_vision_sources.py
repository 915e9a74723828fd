"""torchvision and timm sources without a network: weights enums and their preprocessing,
local checkpoints, head replacement, blocks, did-you-mean."""

from __future__ import annotations

import textwrap

import pytest
import torch

from harness.errors import ConfigError, HarnessError
from harness.registry import SOURCES


@pytest.fixture(scope="module")
def tv():
    return SOURCES.get("torchvision")


def covered(backbone) -> list[str]:
    """Backbone parameters that belong to no block (every one should belong to one)."""
    ids = {id(p) for b in backbone.blocks() for p in b.parameters()}
    return [n for n, p in backbone.named_parameters() if id(p) not in ids]


def test_unknown_model_gets_did_you_mean(tv):
    with pytest.raises(ValueError, match=r"unknown torchvision model 'resnet5'\. Did you mean: .*resnet50"):
        tv.check_name("resnet5")
    tv.check_name("convnext_tiny")


def test_unknown_model_in_a_suite_names_file_line_and_key(tmp_path):
    from harness.suite import load_suite

    f = tmp_path / "s.yaml"
    f.write_text(textwrap.dedent("""\
        suite: s
        seeds: [0]
        pairs:
          - id: p
            source: {model: torchvision/vit_b16}
            target: {dataset: test/tiny_images, task: image-classification}
        strategies: [full_finetune]
        """))
    with pytest.raises(ConfigError) as e:
        load_suite(f)
    assert f"{f}:5: pairs[0].source.model: unknown torchvision model 'vit_b16'. Did you mean: vit_b_16" in str(e.value)


@pytest.mark.parametrize(("name", "weights", "size", "interp"), [
    ("resnet50", "IMAGENET1K_V2", 224, "bilinear"),
    ("efficientnet_b0", "DEFAULT", 224, "bicubic"),
    ("inception_v3", "IMAGENET1K_V1", 299, "bilinear"),
    ("efficientnet_b3", None, 300, "bicubic"),  # weights: null keeps the DEFAULT weights' preprocessing
])
def test_preprocessing_comes_from_the_weights_metadata(name, weights, size, interp):
    from harness.sources.torchvision import input_spec

    spec = input_spec(name, weights)
    assert (spec.size, spec.interpolation) == (size, interp)
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406))


def test_overrides_win_and_bad_weights_are_listed(tv):
    b = tv.build("resnet18", {"weights": "IMAGENET1K_V1", "image_size": 64, "mean": [0.5, 0.5, 0.5],
                              "interpolation": "bicubic"}, pretrained=False)
    assert (b.input_spec.size, b.input_spec.mean, b.input_spec.interpolation) == (64, (0.5, 0.5, 0.5), "bicubic")
    assert b.input_spec.std == pytest.approx((0.229, 0.224, 0.225))  # not overridden: the weights' own
    with pytest.raises(HarnessError, match=r"no weights 'IMAGENET1K_V3'.*Available: DEFAULT, IMAGENET1K_V1, null"):
        tv.build("resnet18", {"weights": "IMAGENET1K_V3"}, pretrained=True)


def test_resnet_head_replaced_blocks_and_checkpoint(tv, tmp_path):
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.resnet18(num_classes=1000).eval()
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": ref.state_dict()}, path)  # a wrapped checkpoint, as training scripts save it
    b = tv.build("resnet18", {"checkpoint": str(path)}, pretrained=True)
    assert b.feature_dim == 512 and b.info["replaced_head"] == "fc" and b.info["weights"] == str(path)
    sd = b.body.state_dict()
    assert not any(k.startswith("fc.") for k in sd)
    for k, v in ref.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(sd[k], v), k
    blocks = b.blocks()
    assert len(blocks) == tv.depth("resnet18", {}) == 5 and blocks[1] is b.body.layer1
    assert covered(b) == []
    b.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = torch.flatten(ref.avgpool(ref.layer4(ref.layer3(ref.layer2(ref.layer1(
            ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))))), 1)
        assert torch.allclose(b({"pixel_values": x}), want, atol=1e-5)
        # the checkpoint's classifier is kept outside the module (LEEP, NCE): features @ W.T + b = its logits
        weight, bias = b.source_head
        assert torch.allclose(b({"pixel_values": x}) @ weight.T + bias, ref(x), atol=1e-4)
    assert not any(p is weight for p in b.parameters())
    # scratch (pretrained=False) ignores the checkpoint
    scratch = tv.build("resnet18", {"checkpoint": str(path)}, pretrained=False)
    assert not torch.equal(scratch.body.conv1.weight, ref.conv1.weight) and scratch.info["weights"] is None
    assert scratch.source_head is None


def test_checkpoint_of_another_model_fails_loudly(tv, tmp_path):
    import torchvision

    path = tmp_path / "wrong.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(HarnessError, match="does not fit torchvision/resnet34|missing"):
        tv.build("resnet34", {"checkpoint": str(path)}, pretrained=True)
    with pytest.raises(HarnessError, match="not found"):
        tv.build("resnet18", {"checkpoint": str(tmp_path / "absent.pth")}, pretrained=True)


def test_download_failure_says_how_to_fix(tv, monkeypatch):
    from torchvision.models import ResNet18_Weights

    def offline(self, *a, **k):
        raise OSError("no network")

    monkeypatch.setattr(type(ResNet18_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(HarnessError, match=r"cannot download torchvision/resnet18.*checkpoint: path"):
        tv.build("resnet18", {"weights": "IMAGENET1K_V1"}, pretrained=True)


@pytest.mark.parametrize(("name", "n_blocks", "dim"), [
    ("vit_b_16", 14, 768), ("efficientnet_b0", 9, 1280),
])  # convnext_tiny and mobilenet_v3_small (28M params to init): tests/integration/test_slow_variants.py
def test_blocks_cover_every_parameter(tv, name, n_blocks, dim):
    b = tv.build(name, {"weights": None}, pretrained=False)
    assert len(b.blocks()) == n_blocks and b.feature_dim == dim
    assert covered(b) == []
    if name == "vit_b_16":  # loose parameters are in the stem block, as the same objects
        assert any(p is b.body.class_token for p in b.blocks()[0].parameters())
        return  # 224 px only; forward checked for the conv nets below
    with torch.no_grad():
        assert b.eval()({"pixel_values": torch.randn(1, 3, 64, 64)}).shape == (1, dim)


def test_timm_tiny_registered_model_and_checkpoint(tmp_path):
    import timm

    src = SOURCES.get("timm")
    with pytest.raises(ValueError, match="Did you mean: test_resnet"):
        src.check_name("test_resnett")
    torch.manual_seed(0)
    ref = timm.create_model("test_resnet", num_classes=10)
    path = tmp_path / "test_resnet.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    b = src.build("test_resnet", {"checkpoint": str(path), "image_size": 32}, pretrained=True)
    assert b.input_spec.size == 32 and b.info["weights"] == str(path)
    for k, v in b.body.state_dict().items():
        assert torch.equal(v, ref.state_dict()[k]), k
    with torch.no_grad():
        x = torch.randn(2, 3, 32, 32)
        assert b.eval()({"pixel_values": x}).shape == (2, b.feature_dim)
        weight, bias = b.source_head  # the checkpoint's 10-class classifier, for LEEP and NCE
        assert torch.allclose(b({"pixel_values": x}) @ weight.T + bias, ref.eval()(x), atol=1e-4)
    assert covered(b) == []
    other = tmp_path / "vit.pth"
    torch.save(timm.create_model("test_vit").state_dict(), other)
    with pytest.raises(HarnessError, match="test_resnet"):
        src.build("test_resnet", {"checkpoint": str(other)}, pretrained=True)


class Trainer:  # a user's object pickled into a checkpoint beside the weights
    pass


def test_a_checkpoint_holding_more_than_tensors_says_so_and_how_to_allow_it(tmp_path):
    from harness.sources.images import load_state_dict_file

    path = tmp_path / "full.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "trainer": Trainer()}, path)
    with pytest.raises(HarnessError) as e:
        load_state_dict_file(str(path))
    msg = str(e.value)
    assert "holds Python objects beyond tensors" in msg and "weights_only=True" in msg
    assert "Trainer" in msg and "torch.save(sd, 'weights.pt')" in msg
