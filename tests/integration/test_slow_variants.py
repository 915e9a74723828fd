"""The slow cases of unit-level behaviour, kept out of tests/unit: the same checks on a larger
model (a tiny BERT where the unit test runs the tiny CNN), bigger architectures, an inductor
compile, and the benchmark script end to end. Run with ``python -m pytest -m slow``."""

from __future__ import annotations

import pytest
import torch

from tests.unit import test_strategies_transfer as transfer
from tests.unit import test_vision_bench as bench
from tests.unit import test_vision_sources as sources
from tests.unit.test_vision_loop import _tiny_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

tv = sources.tv  # the torchvision source fixture
_keep_threads = bench._keep_threads  # the benchmark sets torch's thread count: restored after


def test_distill_reads_the_teachers_logits_on_a_token_pair(write_suite, tmp_path):
    transfer.test_distill_student_reads_its_teachers_exported_logits_and_recovers_them_when_the_cache_lost_them(
        write_suite, tmp_path, "bert")


def test_distill_from_a_source_teacher_with_a_shorter_token_limit(write_suite, tmp_path):
    transfer.test_distill_from_a_source_teacher_with_other_preprocessing(
        write_suite, tmp_path, "bert", "{model: test/tiny_bert, max_length: 12}")


@pytest.mark.parametrize(("name", "n_blocks", "dim"), [("convnext_tiny", 9, 768), ("mobilenet_v3_small", 14, 1024)])
def test_blocks_cover_every_parameter_of_larger_models(tv, name, n_blocks, dim):
    sources.test_blocks_cover_every_parameter(tv, name, n_blocks, dim)


# inductor compiles C++ on CPU: tens of seconds
def test_compile_trains_the_same_weights(tmp_path):
    # SGD: a step is proportional to the gradient (Adam would magnify rounding in near-zero grads)
    eager, _ = _tiny_run(tmp_path / "e", optimizer="sgd", lr=0.1)
    compiled, result = _tiny_run(tmp_path / "c", optimizer="sgd", lr=0.1, compile=True)
    assert result.steps == 2 and result.flops_per_step  # counted on the eager model
    for (k, va), vb in zip(eager.state_dict().items(), compiled.state_dict().values(), strict=True):
        assert torch.allclose(va, vb, atol=1e-4), k
    assert not torch.equal(eager.head.weight, _tiny_run(tmp_path / "i", optimizer="sgd", lr=0.1, max_steps=1)[0].head.weight)


# two models × two step counts on CPU
def test_loop_script_compares_harness_and_plain(capsys):
    out = bench.load("bench_vision_loop").main(["--smoke", "--device", "cpu"])
    assert out["ratio"] > 0 and out["ratio_whole_run"] > 0
    assert "RATIO harness/plain images/s" in capsys.readouterr().out
