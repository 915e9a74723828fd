"""Two micro-benchmarks behind harness 0.2.0's text defaults, one CPU thread, each a ratio taken in
one process:

* AdamW ``foreach`` vs ``fused`` step on MiniLM-sized parameters (22.4M);
* packaged MiniLM forward + backward over 12 shuffled WNUT-16 batches of 16, with the rows run in
  length-sorted chunks (``HFBackbone.chunk_cost`` 4, 16, 48, 96) and without (one chunk).

    python benchmarks/bench_text_step.py
"""

from __future__ import annotations

import time

import torch


def adamw() -> None:
    sizes = [30522 * 384] + [384 * 384] * 24 + [384 * 1536] * 12 + [384] * 100
    params = [torch.nn.Parameter(torch.randn(n)) for n in sizes]
    for p in params:
        p.grad = torch.randn_like(p)
    for name, kw in (("foreach", {"foreach": True}), ("fused", {"fused": True})) * 2:
        opt = torch.optim.AdamW(params, lr=1e-4, **kw)
        opt.step()
        t = time.perf_counter()
        for _ in range(10):
            opt.step()
        print(f"AdamW {name:<8} {(time.perf_counter() - t) * 100:6.1f} ms per step ({sum(sizes) / 1e6:.1f}M params)")


def chunks() -> None:
    from harness.registry import SOURCES, TARGETS

    backbone = SOURCES.get("packaged").build("all-MiniLM-L6-v2", {"max_length": 64}, pretrained=True)
    train = TARGETS.get("packaged").load("wnut16", {}, "token-classification", backbone).splits["train"]
    stream = train.batches(16, shuffle=True, generator=torch.Generator().manual_seed(0))
    batches = [next(stream) for _ in range(12)]
    backbone.train()
    times: dict[int, list[float]] = {c: [] for c in (4, 16, 48, 96, 10**9)}
    for _ in range(2):
        for cost in times:
            backbone.chunk_cost = cost
            t = time.perf_counter()
            for b in batches:
                out = backbone(b)
                out[b["attention_mask"].bool()].pow(2).mean().backward()
            times[cost].append(time.perf_counter() - t)
    whole = min(times[10**9])
    for cost, ts in times.items():
        label = "one chunk" if cost == 10**9 else f"chunk_cost {cost}"
        print(f"forward+backward, {label:<14} {min(ts):6.2f} s  ({whole / min(ts):.2f}x)")


if __name__ == "__main__":
    torch.set_num_threads(1)
    adamw()
    chunks()
