"""``hf/<model id or local directory>``: any Hugging Face encoder through ``AutoModel``.

The default model of the NLP suite is ``hf/bert-base-cased``. With no network, point the suite
at a directory written by ``save_pretrained()`` (model *and* fast tokenizer): ``hf/path/to/dir``
(relative to the working directory) or ``hf//abs/path``.

The record keeps what was loaded: the requested ``revision``, the resolved Hub commit (when
the files came from the Hub), whether the name was a local directory, and the token limit used.
``trust_remote_code`` stays off unless the suite sets it.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from pydantic import Field

from harness.errors import HarnessError
from harness.registry import SOURCES
from harness.sources.base import Source, SourceParams

DEFAULT_MODEL = "bert-base-cased"


class HFParams(SourceParams):
    revision: str | None = Field(None, description="git revision on the Hub (branch, tag or commit; recorded)")
    trust_remote_code: bool = Field(False, description="run model code from the Hub; off unless set")
    max_length: int = Field(128, ge=8, le=8192, description="token limit (capped at the tokenizer's own limit)")


def accepts_kwarg(config: Any, name: str) -> bool:
    """Whether the ``AutoModel`` class for ``config`` takes ``name`` in its constructor.

    BERT-like models take ``add_pooling_layer``; DistilBERT, DeBERTa, ELECTRA … do not, and
    passing it to them is an error.
    """
    from transformers import AutoModel

    try:
        cls = AutoModel._model_mapping[type(config)]
    except (KeyError, AttributeError):
        return False
    return name in inspect.signature(cls.__init__).parameters


def load_tokenizer(name: str, **kw: Any):
    """A fast tokenizer that accepts pre-split words (byte-level BPE needs ``add_prefix_space``)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name, **kw)
    try:
        tok(["a", "b"], is_split_into_words=True)
    except (ValueError, TypeError, AssertionError) as e:
        if "add_prefix_space" not in str(e):
            raise
        tok = AutoTokenizer.from_pretrained(name, add_prefix_space=True, **kw)
    return tok


@SOURCES.register("hf", description=f"any Hugging Face AutoModel id or local directory, e.g. hf/{DEFAULT_MODEL}")
class HF(Source):
    Params = HFParams

    def modality(self, name):
        return "text"

    def check_name(self, name: str) -> None:
        if not name or name.strip() != name:
            raise ValueError(f"not a model id or directory: {name!r} (e.g. hf/{DEFAULT_MODEL} or hf/path/to/saved_model)")

    def depth(self, name: str, params: dict[str, Any]) -> int | None:
        """Embeddings + layers, from a local or already-cached config only (validate never downloads)."""
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(name, revision=params.get("revision"), local_files_only=True)
        except (OSError, ValueError):
            return None
        layers = getattr(config, "num_hidden_layers", None)
        return layers + 1 if isinstance(layers, int) else None

    def build(self, name: str, params: dict[str, Any], pretrained: bool):
        from transformers import AutoConfig, AutoModel

        p = HFParams.model_validate(params)
        local = Path(name).is_dir()
        kw = {"revision": p.revision, "trust_remote_code": p.trust_remote_code}
        try:
            config = AutoConfig.from_pretrained(name, **kw)
            tok = load_tokenizer(name, **kw)
            extra = {"add_pooling_layer": False} if accepts_kwarg(config, "add_pooling_layer") else {}
            if pretrained:
                body = AutoModel.from_pretrained(name, **extra, **kw)
            else:
                body = AutoModel.from_config(config, trust_remote_code=p.trust_remote_code, **extra)
        except OSError as e:
            hint = "" if local else (" With no network, point the suite at a local directory saved with "
                                     "save_pretrained() (model and tokenizer): hf/path/to/dir.")
            raise HarnessError(f"cannot load hf/{name}: {e}.{hint}") from e
        except ValueError as e:  # unknown architecture, remote code refused, …
            raise HarnessError(f"cannot load hf/{name}: {e}") from e
        if not getattr(tok, "is_fast", False):
            raise HarnessError(f"hf/{name}: a fast tokenizer is needed (word_ids for label alignment)")
        if tok.pad_token_id is None:
            raise HarnessError(f"hf/{name}: the tokenizer has no padding token; batches need one")
        max_length = p.max_length
        limit = getattr(tok, "model_max_length", None)
        if isinstance(limit, int) and 0 < limit < max_length:
            max_length = limit
        info = {"weights": name if pretrained else None, "revision": p.revision,
                "commit": getattr(config, "_commit_hash", None), "local_dir": local,
                "model_type": getattr(config, "model_type", None),
                "trust_remote_code": p.trust_remote_code, "max_length": max_length}
        from harness.sources.nets import hf_backbone

        return hf_backbone(body, tok, max_length, info)
