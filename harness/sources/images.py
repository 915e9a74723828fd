"""What every image source shares: the preprocessing overrides a suite may set (``image_size``,
``mean``, ``std``, ``interpolation``), and the local-checkpoint loader (``weights_only``)."""

from __future__ import annotations

import pickle
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from harness.errors import HarnessError
from harness.sources.base import ImageInput, SourceParams

if TYPE_CHECKING:
    import torch

Triple = tuple[float, float, float]


class ImageSourceParams(SourceParams):
    """Preprocessing overrides: each left unset comes from the weights' own metadata."""

    checkpoint: str | None = Field(None, description="local state-dict file (.pth/.pt/.safetensors) instead of a download")
    image_size: int | None = Field(None, ge=16, le=1024, description="input resolution (default: the weights' own)")
    mean: Triple | None = Field(None, description="normalisation mean (default: the weights' own)")
    std: Triple | None = Field(None, description="normalisation std (default: the weights' own)")
    interpolation: Literal["bilinear", "bicubic", "nearest"] | None = Field(None, description="resize filter")


def with_overrides(spec: ImageInput, p: ImageSourceParams) -> ImageInput:
    """``spec`` with the suite's preprocessing overrides applied (unset keys keep the weights')."""
    changes = {k: getattr(p, k) for k in ("mean", "std", "interpolation") if getattr(p, k) is not None}
    if p.image_size is not None:
        changes["size"] = p.image_size
    return replace(spec, **changes)


def load_state_dict_file(path: str) -> dict:
    """A state dict from a ``.safetensors`` or torch file (``{"state_dict": …}`` wrappers unwrapped)."""
    import os

    import torch

    if not os.path.isfile(path):
        raise HarnessError(f"checkpoint file not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused a global: the file holds more than tensors
        named = re.search(r"GLOBAL ([\w.]+)", str(e))
        first = f"it names {named.group(1)}" if named else e.__class__.__name__
        raise HarnessError(
            f"{path}: the checkpoint holds Python objects beyond tensors ({first}); the harness loads "
            "checkpoints with torch.load(weights_only=True), which runs no code from the file. If you trust it, "
            "save its weights alone once and point `checkpoint:` at that file: python -c \"import torch; "
            f"obj = torch.load('{path}', weights_only=False); sd = obj.get('state_dict', obj) if isinstance(obj, dict) "
            "else obj.state_dict(); torch.save(sd, 'weights.pt')\"") from e
    except Exception as e:  # noqa: BLE001 - zip and I/O errors come in many types
        raise HarnessError(f"cannot read checkpoint {path}: {e.__class__.__name__}: {e}") from e
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise HarnessError(f"checkpoint {path} holds a {type(sd).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in sd.items()}  # DataParallel/DDP saves


def head_of(sd: dict, head: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The classifier ``head`` (weight, bias) a state dict holds: the source head LEEP and NCE read."""
    import torch

    w, b = sd.get(f"{head}.weight"), sd.get(f"{head}.bias")
    if not isinstance(w, torch.Tensor) or not isinstance(b, torch.Tensor) or w.ndim != 2:
        return None
    return w.detach().float().clone(), b.detach().float().clone()


def load_backbone_weights(body, sd: dict, head: str, path: str, ref: str) -> None:
    """Load ``sd`` into ``body`` without its classifier (the module named ``head``); every
    other tensor must be present, so a checkpoint of another architecture fails loudly."""

    def is_head(key: str) -> bool:
        return key.startswith(head + ".")

    sd = {k: v for k, v in sd.items() if not is_head(k)}
    try:
        missing, _unexpected = body.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise HarnessError(f"{path}: does not fit {ref}: {str(e).splitlines()[-1].strip()}") from e
    missing = [k for k in missing if not is_head(k)]
    if missing:
        raise HarnessError(f"{path}: missing {len(missing)} weight(s) for {ref}, e.g. {missing[:5]}")
