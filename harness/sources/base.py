"""The source contract and the model every strategy works on.

A *source* namespace (``packaged``, ``timm``, ``hf``, ``test`` …) is a :class:`Source`:
it checks names without building anything (so ``validate`` stays fast) and builds a
:class:`Backbone`. The harness puts a fresh linear head on it: :class:`TransferModel`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from harness.config.schema import Params
from harness.errors import did_you_mean

HeadInit = Literal["auto", "pytorch", "normal"]


class SourceParams(Params):
    """Keys every source takes; each namespace's ``Params`` adds its own."""

    head_init: HeadInit = Field(
        "auto", description="the new head's weights: auto = the model family's own convention (Hugging Face "
        "text models: normal, std = config.initializer_range, zero bias, as AutoModelFor*Classification; "
        "vision: PyTorch's nn.Linear default, as timm's reset_classifier and torchvision); pytorch = "
        "nn.Linear's default (Kaiming-uniform); normal = N(0, initializer_range or 0.02), zero bias")
    pretrained: bool = Field(
        True, description="load the source's pretrained weights; false: the same architecture randomly "
        "initialised (drawn from the run's seed), a source to rank and transfer from like any other")
    layers: int | None = Field(
        None, ge=1, description="keep only the first k stages (CNN) or layers (transformer) after the stem or "
        "embeddings: a depth-truncated variant, whose features are the k-th stage's, pooled")
    pretrain: dict[str, Any] | None = Field(
        None, description="train this source on another task first, as a node of the plan graph (target, "
        "strategy, train, seed; checked when the suite loads): every run that transfers it starts from the "
        "weights that run exported, trained once per key and reused by every run and rerun")


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


def features_depend_on_seed(source: dict[str, Any]) -> bool:
    """A randomly initialised source's features are the seed's draw: a feature cache must key them by it.
    A ``pretrain:`` source's are not: its weights come from one run at the pretrain's own seed."""
    return source.get("pretrained", True) is False and not source.get("pretrain")


def input_identity(source: dict[str, Any]) -> dict[str, Any]:
    """What of a source block decides the backbone's inputs and features: all of it but the new
    head's initialisation (a feature cache or a loaded target is shared across head inits)."""
    return {k: v for k, v in source.items() if k != "head_init"}


class Source:
    """A namespace of models. Subclasses set ``Params`` and implement ``build``."""

    Params: ClassVar[type[SourceParams]] = SourceParams
    names: ClassVar[tuple[str, ...] | None] = None  # closed namespaces list their names

    def modality(self, name: str) -> str:  # "image" | "text"
        raise NotImplementedError

    def check_name(self, name: str) -> None:
        """Raise ``ValueError`` (with a did-you-mean) when ``name`` cannot be built."""
        if self.names is not None and name not in self.names:
            close = did_you_mean(name, self.names)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown model '{name}'.{hint} Available: {', '.join(self.names)}.")

    def depth(self, name: str, params: dict[str, Any]) -> int | None:
        """Number of backbone blocks, when known without building (for validate-time checks)."""
        return None

    def build(self, name: str, params: dict[str, Any], pretrained: bool) -> Backbone:
        raise NotImplementedError


@dataclass(frozen=True)
class ImageInput:
    """Preprocessing an image backbone expects (from its weights' metadata)."""

    size: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    channels: int = 3


@dataclass(frozen=True)
class TextInput:
    """Tokenisation a text backbone expects."""

    tokenizer: Any = field(repr=False)
    max_length: int = 128


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
