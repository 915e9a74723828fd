"""``timm/<model>``: any timm model, ImageNet weights through timm (``pretrained``) or a local file."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from harness.config.errors import HarnessError, did_you_mean
from harness.config.schema import Params
from harness.registry import SOURCES
from harness.sources.base import Source, TimmBackbone, timm_input_spec


class TimmParams(Params):
    checkpoint: str | None = Field(None, description="local state-dict file (.pth/.safetensors) instead of the Hub")
    image_size: int | None = Field(None, ge=16, le=1024, description="input resolution (default: the weights' own)")
    drop_path_rate: float = Field(0.0, ge=0, lt=1)


def load_state_dict_file(path: str) -> dict:
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return sd


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
            raise ValueError(f"unknown timm model '{name}'.{hint}")

    def build(self, name: str, params: dict[str, Any], pretrained: bool):
        import timm

        p = TimmParams.model_validate(params)
        hub = pretrained and p.checkpoint is None
        try:
            body = timm.create_model(name, pretrained=hub, num_classes=0, drop_path_rate=p.drop_path_rate)
        except Exception as e:  # noqa: BLE001 - network/Hub errors come in many types
            raise HarnessError(f"cannot load timm/{name} weights ({e.__class__.__name__}: {e}). With no network, "
                               "download once elsewhere and pass `checkpoint: path/to/file`.") from e
        if pretrained and p.checkpoint:
            sd = {k: v for k, v in load_state_dict_file(p.checkpoint).items()
                  if not k.startswith(body.default_cfg.get("classifier", "fc"))}
            missing, _ = body.load_state_dict(sd, strict=False)
            if missing:
                raise HarnessError(f"{p.checkpoint}: missing weights for timm/{name}: {missing[:5]}")
        return TimmBackbone(body, body.num_features, "image", timm_input_spec(body, p.image_size),
                            {"weights": p.checkpoint or (getattr(body, "pretrained_cfg", {}).get("tag") if hub else None)})
