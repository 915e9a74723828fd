"""The one stable digest: what identifies a run, a cache entry, a decoded dataset, a drawn plot or an
example's content. Every stored identity is one of these hex strings, so their values must never
change: records, warm caches and plot indexes written earlier are matched by them.

``digest`` hashes a JSON-able value (keys sorted, so dict order is not identity; what JSON cannot
hold counts as its ``str``); ``digest_bytes`` hashes bytes or text as they are; ``content_key``
hashes an example's raw content (strings, bytes, arrays, tensors, nested lists of them), typed and
length-prefixed so that different content never concatenates to the same stream.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

import numpy as np


def digest_bytes(data: bytes | str, length: int | None = None) -> str:
    """SHA-256 of ``data`` (text as UTF-8) in hex, its first ``length`` digits when given."""
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:length]


def digest(obj: Any, length: int | None = None, *, compact: bool = False) -> str:
    """SHA-256 of ``obj`` as canonical JSON (sorted keys, ``default=str``), in hex.

    ``compact`` drops the spaces after ``,`` and ``:`` — run_ids were first hashed that way and
    cache keys the other, and each must keep its value.
    """
    separators = (",", ":") if compact else (", ", ": ")
    return digest_bytes(json.dumps(obj, sort_keys=True, separators=separators, default=str), length)


def _is_tensor(x: Any) -> bool:
    # without importing torch here: a tensor exists only once its caller imported torch
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def content_key(*parts: Any) -> str:
    """A 128-bit digest (BLAKE2b) of an example's content: strings, bytes, arrays, tensors, nested
    lists of them; anything else by its ``repr``."""
    h = hashlib.blake2b(digest_size=16)

    def feed(x: Any) -> None:
        if isinstance(x, bytes | bytearray):
            h.update(b"b%d:" % len(x))
            h.update(x)
        elif isinstance(x, str):
            feed(x.encode())
        elif isinstance(x, np.ndarray) or _is_tensor(x):
            a = x if isinstance(x, np.ndarray) else x.detach().cpu().numpy()
            feed(f"{a.dtype}{a.shape}".encode())
            feed(np.ascontiguousarray(a).tobytes())
        elif isinstance(x, list | tuple):
            h.update(b"[%d" % len(x))
            for y in x:
                feed(y)
            h.update(b"]")
        else:
            feed(repr(x))

    for p in parts:
        feed(p)
    return h.hexdigest()
