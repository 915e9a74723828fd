"""``hf/<model id or local dir>``: any Hugging Face encoder through ``AutoModel``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from harness.config.errors import HarnessError
from harness.config.schema import Params
from harness.registry import SOURCES
from harness.sources.base import Source, hf_backbone


class HFParams(Params):
    revision: str | None = Field(None, description="git revision on the Hub (recorded)")
    trust_remote_code: bool = Field(False, description="run model code from the Hub; off unless set")
    max_length: int = Field(128, ge=8, le=8192, description="token limit")


@SOURCES.register("hf", description="any Hugging Face AutoModel id or local directory, e.g. hf/bert-base-cased")
class HF(Source):
    Params = HFParams

    def modality(self, name):
        return "text"

    def check_name(self, name: str) -> None:
        if not name or name.startswith("/") and ".." in name:
            raise ValueError(f"not a model id or directory: {name!r}")

    def build(self, name: str, params: dict[str, Any], pretrained: bool):
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        p = HFParams.model_validate(params)
        kw = {"revision": p.revision, "trust_remote_code": p.trust_remote_code}
        try:
            tok = AutoTokenizer.from_pretrained(name, **kw)
            config = AutoConfig.from_pretrained(name, **kw)
            body = AutoModel.from_pretrained(name, add_pooling_layer=False, **kw) if pretrained else \
                AutoModel.from_config(config, add_pooling_layer=False, trust_remote_code=p.trust_remote_code)
        except OSError as e:
            raise HarnessError(f"cannot load hf/{name}: {e}. With no network, point the suite at a local "
                               "directory saved with save_pretrained().") from e
        if not getattr(tok, "is_fast", False):
            raise HarnessError(f"hf/{name}: a fast tokenizer is needed (word_ids for label alignment)")
        info = {"weights": name if pretrained else None, "revision": p.revision,
                "commit": getattr(config, "_commit_hash", None), "trust_remote_code": p.trust_remote_code}
        return hf_backbone(body, tok, p.max_length, info)
