"""The networks every strategy works on: a source's :class:`Backbone` (timm, Hugging Face,
torchvision, the tiny test models), the :class:`TransferModel` the harness puts a fresh head on,
and the :class:`HeadModel` a frozen-feature strategy trains.

Kept apart from :mod:`harness.sources.base` so that checking a suite never imports torch: the
registries do not walk this module (:mod:`harness.registry`); a source's ``build`` imports it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from harness.errors import HarnessError
from harness.sources.base import HeadInit, ImageInput, TextInput


def build_backbone(source: dict[str, Any], pretrained: bool = True) -> Backbone:
    """The backbone a ``source:`` block names, as every run and ``harness rank`` builds it:
    the namespace's own model, with its pretrained weights unless ``pretrained`` (the strategy's
    wish) or the block says otherwise, truncated to ``layers`` when the block says so."""
    from harness.registry import SOURCES

    ns, name = source["model"].split("/", 1)
    params = {k: v for k, v in source.items() if k != "model"}
    ns_source = SOURCES.get(ns)
    common = ns_source.Params.model_validate(params)
    keep_weights = pretrained and common.pretrained
    backbone = ns_source.build(name, params, pretrained=keep_weights)
    if not common.pretrained:
        backbone.info = {**backbone.info, "weights": None, "pretrained": False}
    if common.layers is not None:
        backbone.truncate(common.layers)
        backbone.source_head = None  # it read the last stage's features
        backbone.info = {**backbone.info, "layers": common.layers}
    return backbone


class Backbone(nn.Module):
    """A pretrained network without its head.

    ``forward(batch)`` returns pooled features ``(B, D)`` for images or per-token hidden
    states ``(B, T, D)`` for text. ``blocks()`` lists its stages from input to output
    (stem/embeddings first) — what partial fine-tuning, gradual unfreezing and layer-wise
    lr decay count in. ``body`` is the wrapped network (where LoRA/adapters are injected).
    """

    def __init__(self, body: nn.Module, feature_dim: int, modality: str, input_spec: ImageInput | TextInput,
                 info: dict[str, Any] | None = None):
        super().__init__()
        self.body = body
        self.feature_dim = feature_dim
        self.modality = modality
        self.input_spec = input_spec
        self.info = dict(info or {})  # recorded: weights name, revision, …

    def blocks(self) -> list[nn.Module]:
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def truncate(self, layers: int) -> None:
        """Keep the first ``layers`` stages or layers after the stem (``layers:`` of a source block)."""
        raise ValueError(f"layers: {layers}: {type(self).__name__} cannot be truncated (timm and Hugging Face "
                         "encoders, and the packaged models, can)")

    # the source's own classifier (weight, bias), kept out of the module (no parameter, never trained)
    # where the source was trained as one: LEEP and NCE score a target by its predictions
    source_head: tuple[torch.Tensor, torch.Tensor] | None = None

    # the family's convention for a new head (``head_init: auto``); vision: nn.Linear's default
    head_convention: ClassVar[HeadInit] = "pytorch"
    initializer_range: float = 0.02  # std of ``head_init: normal``

    def head_init_used(self, init: HeadInit = "auto") -> dict[str, Any]:
        """What ``init`` resolves to on this backbone (recorded in ``config.notes.head_init``)."""
        kind = self.head_convention if init == "auto" else init
        return {"init": kind, "std": self.initializer_range} if kind == "normal" else {"init": kind}

    def new_head(self, num_labels: int, init: HeadInit = "auto") -> nn.Linear:
        """A fresh linear head on this backbone's features, initialised as ``init`` says (draws
        from the global RNG, so it follows the run's seed)."""
        head = nn.Linear(self.feature_dim, num_labels)
        if self.head_init_used(init)["init"] == "normal":
            nn.init.normal_(head.weight, mean=0.0, std=self.initializer_range)
            nn.init.zeros_(head.bias)
        return head


class TransferModel(nn.Module):
    """Backbone + a fresh linear head for the target's labels."""

    def __init__(self, backbone: Backbone, num_labels: int, dropout: float = 0.0, head_init: HeadInit = "auto"):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head_init = head_init  # auxiliary heads (multitask) are made alike
        self.head = backbone.new_head(num_labels, head_init)

    def blocks(self) -> list[nn.Module]:
        return self.backbone.blocks()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        features = pool_features(self.backbone(batch), batch)
        return {"logits": self.head(self.dropout(features)), "features": features}


def pool_features(features: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-token features ``(B, T, D)`` become one vector per example ``(B, D)`` — the first
    token ([CLS]) — when the batch has one label per example (text classification)."""
    labels = batch.get("labels")
    if features.ndim == 3 and labels is not None and labels.ndim == 1:
        return features[:, 0]
    return features


class HeadModel(nn.Module):
    """A head over precomputed features (linear probing on the feature cache)."""

    def __init__(self, head: nn.Linear):
        super().__init__()
        self.head = head

    def blocks(self) -> list[nn.Module]:
        return []

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"logits": self.head(batch["features"]), "features": batch["features"]}


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


class TimmBackbone(Backbone):
    """Any timm model with ``num_classes=0`` (pooled features)."""

    def blocks(self) -> list[nn.Module]:
        m = self.body
        stem = [getattr(m, n) for n in ("conv_stem", "bn1", "stem", "patch_embed", "conv1") if hasattr(m, n)]
        stages = None
        for name in ("blocks", "stages", "layers"):
            if isinstance(getattr(m, name, None), nn.Sequential | nn.ModuleList):
                stages = list(getattr(m, name))
                break
        if stages is None:  # ResNet-style layer1..4
            stages = [getattr(m, f"layer{i}") for i in range(1, 5) if hasattr(m, f"layer{i}")]
        tail = [getattr(m, n) for n in ("conv_head", "bn2", "norm", "fc_norm", "head_drop")
                if isinstance(getattr(m, n, None), nn.Module) and not isinstance(getattr(m, n), nn.Identity)]
        out = [nn.ModuleList(stem)] if stem else []
        out += stages
        if tail:
            out.append(nn.ModuleList(tail))
        return out

    def forward(self, batch):
        return self.body(batch["pixel_values"])

    def truncate(self, layers: int) -> None:
        m = self.body
        for name in ("blocks", "stages", "layers"):
            stages = getattr(m, name, None)
            if isinstance(stages, nn.Sequential | nn.ModuleList):
                if not layers <= len(stages):
                    raise ValueError(f"layers: {layers}: the model has {len(stages)} stages")
                setattr(m, name, type(stages)(*list(stages)[:layers]) if isinstance(stages, nn.Sequential)
                        else nn.ModuleList(list(stages)[:layers]))
                break
        else:
            found = [i for i in range(1, 5) if hasattr(m, f"layer{i}")]
            if not found:
                raise ValueError(f"layers: {layers}: cannot find the stages of {type(m).__name__}")
            if not layers <= len(found):
                raise ValueError(f"layers: {layers}: the model has {len(found)} stages")
            for i in found[layers:]:
                setattr(m, f"layer{i}", nn.Identity())
        # the head convolution (and its norm) expect the last stage's channels: the features are now
        # the k-th stage's, pooled
        for name in ("conv_head", "bn2"):
            if isinstance(getattr(m, name, None), nn.Module):
                setattr(m, name, nn.Identity())
        self.feature_dim = self._probe_dim()

    @torch.no_grad()
    def _probe_dim(self) -> int:
        was = self.body.training
        self.body.eval()
        size = self.input_spec.size if isinstance(self.input_spec, ImageInput) else 224
        out = self.body(torch.zeros(1, 3, size, size))
        self.body.train(was)
        return int(out.shape[-1])


def timm_input_spec(model: nn.Module, image_size: int | None) -> ImageInput:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = image_size or int(cfg.get("input_size", (3, 224, 224))[-1])
    return ImageInput(size=size, mean=tuple(cfg.get("mean", ImageInput.mean)), std=tuple(cfg.get("std", ImageInput.std)),
                      interpolation=cfg.get("interpolation", "bilinear"))


class HFBackbone(Backbone):
    """A Hugging Face encoder (``AutoModel``): per-token last hidden states. A new head is
    initialised as the library's ``*ForTokenClassification`` heads are: N(0, initializer_range)."""

    head_convention = "normal"

    @property
    def initializer_range(self) -> float:  # type: ignore[override]
        return float(getattr(self.body.config, "initializer_range", 0.02))

    def blocks(self) -> list[nn.Module]:
        body = self.body
        layers = None
        for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers", "h"):
            obj = body
            try:
                for part in path.split("."):
                    obj = getattr(obj, part)
            except AttributeError:
                continue
            layers = list(obj)
            break
        if layers is None:
            raise TypeError(f"cannot find the layer list of {type(body).__name__}")
        emb = getattr(body, "embeddings", None) or getattr(body, "embed_tokens", None)
        return ([emb] if emb is not None else []) + layers

    def truncate(self, layers: int) -> None:
        encoder = getattr(self.body, "encoder", None)
        stack = getattr(encoder, "layer", None)
        if not isinstance(stack, nn.ModuleList):
            raise ValueError(f"layers: {layers}: cannot find the layer list of {type(self.body).__name__}")
        if not layers <= len(stack):
            raise ValueError(f"layers: {layers}: the model has {len(stack)} layers")
        encoder.layer = nn.ModuleList(list(stack)[:layers])
        self.body.config.num_hidden_layers = layers

    # Rows are run in length-sorted chunks, each trimmed to its own longest row, when that saves
    # more padded positions than a chunk costs: the batch (and so the loss and its gradient) is
    # the same, only less padding is computed. CPU only: a GPU pays per kernel, not per position.
    chunk_cost = 96  # padded positions one more chunk must save (CPU, MiniLM-sized models)
    # Families whose encoder takes ``inputs_embeds`` as exactly the word-embedding lookup (no
    # scaling; positions and segments still added inside, those of real tokens unchanged). Their
    # words are looked up once per batch, not per chunk: each lookup's backward writes a dense
    # gradient the size of the vocabulary (47 MB for MiniLM) that is then added into .grad.
    embed_once_types = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra",
                                  "deberta", "deberta-v2"})

    def forward(self, batch):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        chunks = length_chunks(mask.sum(1).tolist(), self.chunk_cost) if ids.device.type == "cpu" else None
        if not chunks or len(chunks) == 1:
            return self.body(input_ids=ids, attention_mask=mask).last_hidden_state
        width, parts, rows = ids.shape[1], [], []
        words = self.body.get_input_embeddings()(ids) if self._embeds_once() else None
        for idx, w in chunks:
            index = torch.tensor(idx, device=ids.device)
            inputs = {"inputs_embeds": words[index, :w]} if words is not None else {"input_ids": ids[index, :w]}
            h = self.body(**inputs, attention_mask=mask[index, :w]).last_hidden_state
            parts.append(nn.functional.pad(h, (0, 0, 0, width - w)))
            rows += idx
        inverse = torch.empty(len(rows), dtype=torch.long, device=ids.device)
        inverse[torch.tensor(rows, device=ids.device)] = torch.arange(len(rows), device=ids.device)
        return torch.cat(parts)[inverse]

    def _embeds_once(self) -> bool:
        return (getattr(self.body.config, "model_type", None) in self.embed_once_types
                and isinstance(self.body.get_input_embeddings(), nn.Embedding))


def length_chunks(lengths: list[int], chunk_cost: int) -> list[tuple[list[int], int]] | None:
    """Rows grouped into contiguous runs of the length-sorted order, minimising padded positions
    plus ``chunk_cost`` per chunk (dynamic programming over the sorted lengths); each group with
    its width. None for a batch of one row."""
    n = len(lengths)
    if n < 2:
        return None
    order = sorted(range(n), key=lambda i: -lengths[i])
    sl = [lengths[i] for i in order]  # descending: a chunk starting at k is sl[k] wide
    best = [0.0] * (n + 1)  # best[k]: cost of rows k.. ; choice[k]: where the chunk from k ends
    choice = [n] * (n + 1)
    for k in range(n - 1, -1, -1):
        best[k], choice[k] = min((chunk_cost + sl[k] * (j - k) + best[j], j) for j in range(k + 1, n + 1))
    out, k = [], 0
    while k < n:
        j = choice[k]
        out.append((order[k:j], max(1, sl[k])))
        k = j
    return out


def hf_backbone(body: nn.Module, tokenizer: Any, max_length: int, info: dict[str, Any]) -> HFBackbone:
    return HFBackbone(body, int(body.config.hidden_size), "text", TextInput(tokenizer, max_length), info)


class TinyCNN(Backbone):
    def __init__(self, input_spec: ImageInput, width: int = 8):
        import torch.nn as nn

        body = nn.ModuleDict({
            "stem": nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()),
            "stage1": nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()),
            "stage2": nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU()),
        })
        super().__init__(body, 2 * width, "image", input_spec, {"weights": "random (test model)"})

    def blocks(self):
        return [self.body["stem"], self.body["stage1"], self.body["stage2"]]

    def forward(self, batch):
        x = batch["pixel_values"]
        for block in self.blocks():
            x = block(x)
        return x.mean(dim=(2, 3))


def classifier_name(body) -> str:
    """Dotted name of the model's last ``nn.Linear`` (its ImageNet classifier)."""
    names = [n for n, m in body.named_modules() if isinstance(m, nn.Linear) and not n.startswith("AuxLogits")]
    if not names:
        raise HarnessError(f"{type(body).__name__} has no nn.Linear classifier to replace")
    return names[-1]


def drop_classifier(body) -> tuple[str, int]:
    """Replace the classifier with an identity; return its name and input width."""
    name = classifier_name(body)
    parent_name, _, leaf = name.rpartition(".")
    parent = body.get_submodule(parent_name) if parent_name else body
    width = getattr(parent, leaf).in_features
    setattr(parent, leaf, nn.Identity())
    return name, width


class _Params(nn.Module):
    """A block made of loose parameters (ViT's class token and position embedding)."""

    def __init__(self, modules: dict, params: dict):
        super().__init__()
        for k, m in modules.items():
            self.add_module(k, m)
        for k, p in params.items():
            self.register_parameter(k, p)  # the same Parameter objects: freezing here freezes the model's


class TorchvisionBackbone(Backbone):
    """A torchvision classifier without its last linear layer."""

    def blocks(self):
        m = self.body
        if hasattr(m, "layer1"):  # ResNet / ResNeXt / Wide ResNet
            stem = nn.ModuleList([m.conv1, m.bn1])
            return [stem, *[getattr(m, f"layer{i}") for i in range(1, 5)]]
        if hasattr(m, "encoder") and hasattr(m, "conv_proj"):  # ViT
            stem = _Params({"conv_proj": m.conv_proj}, {"class_token": m.class_token, "pos_embedding": m.encoder.pos_embedding})
            return [stem, *m.encoder.layers, m.encoder.ln]
        if hasattr(m, "features"):  # ConvNeXt, EfficientNet, MobileNet, Swin, DenseNet, VGG …
            blocks = list(m.features)
            tail = [c for c in getattr(m, "classifier", nn.Sequential()).children()
                    if any(True for _ in c.parameters()) and not isinstance(c, nn.Identity)]
            norm = getattr(m, "norm", None)  # Swin
            if isinstance(norm, nn.Module):
                tail.insert(0, norm)
            return blocks + ([nn.ModuleList(tail)] if tail else [])
        if hasattr(m, "trunk_output"):  # RegNet
            return [m.stem, *m.trunk_output]
        raise TypeError(f"blocks() does not know the stages of {type(m).__name__}; "
                        "strategies that count blocks cannot use it")

    def forward(self, batch):
        out = self.body(batch["pixel_values"])
        return getattr(out, "logits", out)  # Inception/GoogLeNet return (logits, aux) in training
