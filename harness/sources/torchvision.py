"""``torchvision/<model>``: any torchvision classification model with its weights enum.

``weights`` names a member of the model's weights enum (``DEFAULT``, ``IMAGENET1K_V1``,
``IMAGENET1K_V2`` …) or ``null``; ``checkpoint:`` loads a local state-dict file instead of
downloading. Preprocessing (crop resolution, mean/std, interpolation) comes from the weights'
metadata (``weights.transforms()``) unless the suite overrides it — the same for the
random-init (``scratch``) run, so every strategy sees the same inputs. The ImageNet classifier
(the model's last ``nn.Linear``) is replaced by an identity: the backbone returns pooled
features and the harness puts its own head on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from harness.errors import HarnessError, did_you_mean
from harness.registry import SOURCES
from harness.sources.base import ImageInput, Source
from harness.sources.images import (
    ImageSourceParams,
    head_of,
    load_backbone_weights,
    load_state_dict_file,
    with_overrides,
)

if TYPE_CHECKING:
    from harness.sources.nets import TorchvisionBackbone

VIT_DEPTHS = {"vit_b": 14, "vit_l": 26, "vit_h": 34}  # stem + encoder layers + final norm


class TorchvisionParams(ImageSourceParams):
    weights: str | None = Field("DEFAULT", description="member of the model's weights enum (DEFAULT, IMAGENET1K_V2, …) or null")

    @field_validator("weights")
    @classmethod
    def _upper(cls, v: str | None) -> str | None:
        return None if v is None or v.lower() in ("none", "null") else v


def model_names() -> list[str]:
    try:
        import torchvision.models as tvm
    except ImportError as e:
        raise ValueError("torchvision/ sources need torchvision: pip install 'transfer-harness[vision]'") from e

    return sorted(tvm.list_models(module=tvm))


def weights_enum(name: str, weights: str | None):
    """The weights enum member ``weights`` of model ``name`` (None for ``null``)."""
    from torchvision.models import get_model_weights

    if weights is None:
        return None
    enum = get_model_weights(name)
    members = [m for m in enum.__members__ if m != "DEFAULT"]
    try:
        return enum[weights]
    except KeyError:
        close = did_you_mean(weights, [*members, "DEFAULT"])
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise HarnessError(f"torchvision/{name} has no weights '{weights}'.{hint} "
                           f"Available: DEFAULT, {', '.join(members)}, null.") from None


def input_spec(name: str, weights: str | None) -> ImageInput:
    """Preprocessing from the weights' metadata; with ``weights: null``, from the model's
    DEFAULT weights (so scratch sees what the pretrained run sees), else ImageNet's 224."""
    from torchvision.models import get_model_weights

    member = weights_enum(name, weights)
    if member is None:
        enum = get_model_weights(name)
        member = enum.DEFAULT if "DEFAULT" in enum.__members__ else None
    if member is None:
        return ImageInput(size=224)
    t = member.transforms()
    interp = getattr(t.interpolation, "value", str(t.interpolation)).lower()
    size = t.crop_size[0] if isinstance(t.crop_size, list | tuple) else int(t.crop_size)
    return ImageInput(size=int(size), mean=tuple(t.mean), std=tuple(t.std), interpolation=interp)


@SOURCES.register("torchvision", description="any torchvision classifier with its weights enum, e.g. torchvision/resnet50 "
                  "(weights: DEFAULT|IMAGENET1K_V2|null, or checkpoint: file)")
class Torchvision(Source):
    Params = TorchvisionParams

    def modality(self, name):
        return "image"

    def check_name(self, name: str) -> None:
        names = model_names()
        if name not in names:
            close = did_you_mean(name, names)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown torchvision model '{name}'.{hint} "
                             "List them with torchvision.models.list_models(module=torchvision.models).")

    def depth(self, name, params):
        """Blocks known without building: ResNets (stem + layer1..4) and ViTs."""
        if name.startswith(("resnet", "resnext", "wide_resnet")):
            return 5
        return VIT_DEPTHS.get(name[:5])

    def build(self, name: str, params: dict[str, Any], pretrained: bool) -> TorchvisionBackbone:
        import torchvision.models as tvm

        from harness.sources.nets import TorchvisionBackbone, classifier_name, drop_classifier

        p = TorchvisionParams.model_validate(params)
        member = weights_enum(name, p.weights)  # a bad name fails before anything is built
        spec = with_overrides(input_spec(name, p.weights), p)
        body = tvm.get_model(name, weights=None)
        fixed = getattr(body, "image_size", None)  # ViTs take only the resolution they were built for
        if isinstance(fixed, int) and spec.size != fixed:
            raise HarnessError(f"torchvision/{name} takes {fixed}-px inputs only; drop `image_size: {spec.size}`")
        info: dict[str, Any] = {"weights": None, "resize_size": None}
        if member is not None:
            info["resize_size"] = member.transforms().resize_size
        source_head = None
        if pretrained and p.checkpoint:
            sd = load_state_dict_file(p.checkpoint)
            load_backbone_weights(body, sd, classifier_name(body), p.checkpoint, f"torchvision/{name}")
            source_head = head_of(sd, classifier_name(body))
            info["weights"] = p.checkpoint
        elif pretrained and member is not None:
            try:
                sd = member.get_state_dict(progress=False, check_hash=True)
            except Exception as e:  # noqa: BLE001 - URL/HTTP/socket errors come in many types
                raise HarnessError(
                    f"cannot download torchvision/{name} weights {member} ({e.__class__.__name__}: {e}). "
                    f"On a machine with a network: python -c \"import torchvision; torchvision.models.{type(member).__name__}"
                    f".{member.name}.get_state_dict()\" (cached under $TORCH_HOME/hub/checkpoints), or pass "
                    "`checkpoint: path/to/state_dict.pth`.") from e
            body.load_state_dict(sd)
            source_head = head_of(sd, classifier_name(body))
            info["weights"] = f"{type(member).__name__}.{member.name}"
        head, width = drop_classifier(body)
        info["replaced_head"] = head
        backbone = TorchvisionBackbone(body, width, "image", spec, info)
        backbone.source_head = source_head  # its ImageNet classifier, kept outside the module: LEEP and NCE
        return backbone
