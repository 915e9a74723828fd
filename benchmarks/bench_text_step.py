"""Four micro-benchmarks behind harness 0.2's text defaults, one CPU thread, each a ratio taken in
one process:

* AdamW ``foreach`` vs ``fused`` step on MiniLM-sized parameters (22.4M): both warmed up untimed
  (two steps each), then timed twice each, foreach first and then fused first; each timing is 10
  steps of a fresh optimizer after its untimed first step (which creates its state), wall clock;
* packaged MiniLM forward + backward over 12 shuffled WNUT-16 batches of 16, with the rows run in
  length-sorted chunks (``HFBackbone.chunk_cost`` 4, 16, 48, 96) and without (one chunk): after an
  untimed warm-up pass, two rounds, the second in reverse order, the fastest of each kept; every
  backward is followed by ``zero_grad(set_to_none=True)`` on every side, so each pass computes
  fresh gradients and none accumulates across passes; wall clock;
* whole chunked training steps over 12 batches with the words looked up once per batch
  (``HFBackbone.embed_once_types``) and once per chunk, alternating, median of 5 rounds;
* whole training steps (forward, backward, clipping, fused AdamW, ``zero_grad``) over 8 batches,
  with glibc's defaults, then after :func:`harness.run.alloc.keep_freed_memory` (which lasts for
  the process, so the two come one after the other, not alternating): CPU time and minor page
  faults, median of 5 rounds each. Run it last, as here.

    python benchmarks/bench_text_step.py
"""

from __future__ import annotations

import resource
import statistics
import time

import torch


def adamw() -> None:
    sizes = [30522 * 384] + [384 * 384] * 24 + [384 * 1536] * 12 + [384] * 100
    params = [torch.nn.Parameter(torch.randn(n)) for n in sizes]
    for p in params:
        p.grad = torch.randn_like(p)
    sides = (("foreach", {"foreach": True}), ("fused", {"fused": True}))
    for _name, kw in sides:  # untimed warm-up of both: first-use code paths, the allocator's first pages
        opt = torch.optim.AdamW(params, lr=1e-4, **kw)
        opt.step()
        opt.step()
    del opt
    for name, kw in sides + sides[::-1]:  # foreach first, then fused first
        opt = torch.optim.AdamW(params, lr=1e-4, **kw)
        opt.step()  # the state is created in the first step, untimed
        t = time.perf_counter()
        for _ in range(10):
            opt.step()
        print(f"AdamW {name:<8} {(time.perf_counter() - t) * 100:6.1f} ms per step ({sum(sizes) / 1e6:.1f}M params)")
        del opt  # one optimizer's state alive at a time, on both sides


def minilm_batches(n: int, max_length: int = 64):
    from harness.registry import SOURCES, TARGETS

    backbone = SOURCES.get("packaged").build("all-MiniLM-L6-v2", {"max_length": max_length}, pretrained=True)
    data = TARGETS.get("packaged").load("wnut16", {}, "token-classification", backbone)
    stream = data.splits["train"].batches(16, shuffle=True, generator=torch.Generator().manual_seed(0))
    return backbone, len(data.label_names), [next(stream) for _ in range(n)]


def chunks() -> None:
    backbone, _, batches = minilm_batches(12)
    backbone.train()
    times: dict[int, list[float]] = {c: [] for c in (4, 16, 48, 96, 10**9)}

    def passes() -> None:
        for b in batches:
            out = backbone(b)
            out[b["attention_mask"].bool()].pow(2).mean().backward()
            backbone.zero_grad(set_to_none=True)  # as a training step: no gradient carried between passes

    backbone.chunk_cost = 10**9
    passes()  # untimed warm-up
    for r in range(2):
        for cost in times if r % 2 == 0 else list(times)[::-1]:  # the order reversed in the second round
            backbone.chunk_cost = cost
            t = time.perf_counter()
            passes()
            times[cost].append(time.perf_counter() - t)
    whole = min(times[10**9])
    for cost, ts in times.items():
        label = "one chunk" if cost == 10**9 else f"chunk_cost {cost}"
        print(f"forward+backward, {label:<14} {min(ts):6.2f} s  ({whole / min(ts):.2f}x)")


def training_steps(n_batches: int, max_length: int):
    """The backbone, and a function that runs one training step per batch and returns its CPU
    seconds and minor page faults."""
    backbone, labels, batches = minilm_batches(n_batches, max_length=max_length)
    head = torch.nn.Linear(backbone.feature_dim, labels)
    model = torch.nn.ModuleDict({"backbone": backbone, "head": head}).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def steps() -> tuple[float, int]:
        t, f = time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for b in batches:
            logits = head(backbone(b))
            torch.nn.functional.cross_entropy(logits.flatten(0, 1), b["labels"].flatten(), ignore_index=-100).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return time.process_time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f

    return backbone, steps


def embed_once(rounds: int = 5) -> None:
    backbone, steps = training_steps(12, max_length=64)
    every_type = type(backbone).embed_once_types
    cpu: dict[str, list[float]] = {"once per batch": [], "once per chunk": []}
    steps()
    for _ in range(rounds):
        for name, types in (("once per batch", every_type), ("once per chunk", frozenset())):
            backbone.embed_once_types = types
            cpu[name].append(steps()[0])
    med = {k: statistics.median(v) for k, v in cpu.items()}
    for name in cpu:
        print(f"12 chunked training steps, words looked up {name:<15} {med[name]:6.2f} CPU-s (median of {rounds})")
    print(f"once per batch / once per chunk: {med['once per chunk'] / med['once per batch']:.2f}x")


def allocator(rounds: int = 5) -> None:
    from harness.run.alloc import claim, keep_freed_memory

    claim()  # the setting applies only in the harness's own processes (as under `harness run`)
    _, steps = training_steps(8, max_length=128)
    steps()
    runs: dict[str, list[tuple[float, int]]] = {"default": [steps() for _ in range(rounds)]}
    state = keep_freed_memory("cpu")
    steps()  # the heap settles
    runs[state] = [steps() for _ in range(rounds)]
    cpu = {k: statistics.median(t for t, _ in v) for k, v in runs.items()}
    for name, v in runs.items():
        faults = statistics.median(f for _, f in v) / 8
        print(f"8 training steps, host memory {name:<11} {cpu[name]:6.2f} CPU-s  {faults:8.0f} page faults per step")
    if len(cpu) == 2:
        print(f"{state} / default: {cpu['default'] / cpu[state]:.2f}x")


if __name__ == "__main__":
    torch.set_num_threads(1)
    adamw()
    chunks()
    embed_once()
    allocator()
