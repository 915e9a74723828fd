"""Source variants for a model zoo: depth-truncated (``layers: k``) and randomly initialised
(``pretrained: false``) sources, and the feature-cache key they need."""

from __future__ import annotations

import pytest
import torch

from harness.run.features import frozen_key
from harness.sources.base import features_depend_on_seed
from harness.sources.nets import build_backbone

EFFNET = {"model": "packaged/efficientnet_lite0", "image_size": 32}
MINILM = {"model": "packaged/all-MiniLM-L6-v2", "max_length": 16}


def test_a_truncated_cnn_keeps_the_first_stages_with_their_pretrained_weights():
    full = build_backbone(EFFNET)
    cut = build_backbone({**EFFNET, "layers": 4})
    assert cut.info["layers"] == 4 and cut.feature_dim == 80  # stage 4 of EfficientNet-Lite0: 80 channels
    assert len(cut.blocks()) == 1 + 4  # the stem and four stages; no head convolution
    for a, b in zip(full.blocks()[:5], cut.blocks(), strict=True):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    full.eval()
    cut.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        stem = full.body.bn1(full.body.conv_stem(x))
        expected = full.body.blocks[:4](stem).mean((2, 3))
        got = cut({"pixel_values": x})
    assert torch.allclose(got, expected, atol=1e-5)


def test_a_truncated_transformer_gives_the_hidden_states_of_its_last_kept_layer():
    full = build_backbone(MINILM)
    cut = build_backbone({**MINILM, "layers": 2})
    assert len(cut.blocks()) == 1 + 2 and cut.body.config.num_hidden_layers == 2
    full.eval()
    cut.eval()
    ids = torch.tensor([[101, 7592, 2088, 102, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        hidden = full.body(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[2]
        got = cut({"input_ids": ids, "attention_mask": mask})
    assert torch.allclose(got, hidden, atol=1e-5)


def test_more_layers_than_the_model_has_is_a_clear_error():
    with pytest.raises(ValueError, match="has 7 stages"):
        build_backbone({**EFFNET, "layers": 8})
    with pytest.raises(ValueError, match="cannot be truncated"):
        build_backbone({"model": "test/tiny_cnn", "layers": 1})


def test_a_random_source_is_the_architecture_drawn_from_the_seed():
    trained = build_backbone(EFFNET)
    torch.manual_seed(0)
    a = build_backbone({**EFFNET, "pretrained": False})
    torch.manual_seed(0)
    b = build_backbone({**EFFNET, "pretrained": False})
    torch.manual_seed(1)
    c = build_backbone({**EFFNET, "pretrained": False})
    w = "body.conv_stem.weight"
    assert torch.equal(a.state_dict()[w], b.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], c.state_dict()[w])
    assert not torch.equal(a.state_dict()[w], trained.state_dict()[w])
    assert a.info["pretrained"] is False and a.info["weights"] is None


def test_the_feature_key_holds_the_seed_only_when_the_features_depend_on_it():
    class Data:
        split_info = {"seed": 0}
        preprocessing = {"size": 32}
        splits = {"train": [0] * 5}

    random = {**EFFNET, "pretrained": False}
    assert features_depend_on_seed(random) and not features_depend_on_seed(EFFNET)
    assert frozen_key(random, {}, Data, 0) != frozen_key(random, {}, Data, 1)
    assert frozen_key(EFFNET, {}, Data, 0) == frozen_key(EFFNET, {}, Data, 1)
    assert "seed" not in frozen_key(EFFNET, {}, Data, 0)  # the pretrained sources' cache entries are unchanged


def test_the_packaged_effnet_keeps_its_imagenet_head_for_leep_and_nce():
    import timm

    from harness.run.transferability import source_probabilities
    from harness.sources.packaged import EFFNET as NAME
    from harness.sources.packaged import efficientnet_lite0_state_dict

    backbone = build_backbone(EFFNET).eval()
    full = timm.create_model(NAME, pretrained=False)
    full.load_state_dict(efficientnet_lite0_state_dict())
    full.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        probs = source_probabilities(backbone, backbone({"pixel_values": x}))
        expected = torch.softmax(full(x).double(), dim=1).numpy()
    assert probs.shape == (2, 1000) and abs(probs - expected).max() < 1e-5
    assert sum(p.numel() for p in backbone.parameters()) == sum(  # kept outside the module: never trained
        p.numel() for n, p in full.named_parameters() if not n.startswith("classifier"))
    assert build_backbone({**EFFNET, "layers": 3}).source_head is None  # it read the last stage
    assert build_backbone({**EFFNET, "pretrained": False}).source_head is None
