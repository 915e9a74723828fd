"""``timm/<model>``: any timm model, ImageNet weights through timm (``pretrained``) or a local file."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from harness.errors import HarnessError, did_you_mean
from harness.registry import SOURCES
from harness.sources.base import Source
from harness.sources.images import (
    ImageSourceParams,
    head_of,
    load_backbone_weights,
    load_state_dict_file,
    with_overrides,
)


class TimmParams(ImageSourceParams):
    drop_path_rate: float = Field(0.0, ge=0, lt=1)


@SOURCES.register("timm", description="any timm model, e.g. timm/resnet50 (ImageNet weights via the Hub, or checkpoint: file)")
class Timm(Source):
    Params = TimmParams

    def modality(self, name):
        return "image"

    def check_name(self, name: str) -> None:
        import timm

        if not timm.is_model(name.split(".")[0]):
            close = did_you_mean(name, timm.list_models())
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown timm model '{name}'.{hint} List them with timm.list_models('*pattern*').")

    def build(self, name: str, params: dict[str, Any], pretrained: bool):
        import timm

        from harness.sources.nets import TimmBackbone, timm_input_spec

        p = TimmParams.model_validate(params)
        hub = pretrained and p.checkpoint is None
        try:
            body = timm.create_model(name, pretrained=hub, num_classes=0, drop_path_rate=p.drop_path_rate)
        except Exception as e:  # noqa: BLE001 - network/Hub errors come in many types
            raise HarnessError(f"cannot load timm/{name} weights ({e.__class__.__name__}: {e}). With no network, "
                               "download once elsewhere and pass `checkpoint: path/to/file`.") from e
        source_head = None
        if pretrained and p.checkpoint:
            head = body.pretrained_cfg.get("classifier", "fc")
            sd = load_state_dict_file(p.checkpoint)
            load_backbone_weights(body, sd, head, p.checkpoint, f"timm/{name}")
            source_head = head_of(sd, head)
        spec = with_overrides(timm_input_spec(body, None), p)
        tag = getattr(body, "pretrained_cfg", {}).get("tag")
        backbone = TimmBackbone(body, body.num_features, "image", spec,
                                {"weights": p.checkpoint if pretrained and p.checkpoint else (f"{name}.{tag}" if hub else None)})
        # the checkpoint's classifier, kept outside the module for LEEP and NCE (Hub weights come
        # without it: timm drops the classifier it is asked not to build)
        backbone.source_head = source_head
        return backbone
