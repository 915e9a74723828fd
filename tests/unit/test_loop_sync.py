"""The loop reads the training loss on the host every few micro-steps on a GPU (a read per step
makes the CPU wait for the GPU and stops it queueing the next step), every step on the CPU; the
running loss, the curve and the divergence check must not depend on how often it reads."""

from __future__ import annotations

import pytest
import torch

from harness.errors import Diverged
from harness.run import loop
from harness.run.loop import LossTally, host_sync_every
from tests.unit.test_vision_loop import _tiny_run


def test_reads_every_step_on_cpu_and_in_batches_on_cuda():
    assert host_sync_every(torch.device("cpu")) == 1
    assert host_sync_every(torch.device("cuda", 0)) == loop.HOST_SYNC_EVERY > 1


def test_tally_sums_in_step_order_whatever_the_read_interval():
    losses = [torch.tensor(v, dtype=torch.float32) for v in (2.3025851, 1.7, 0.1 + 0.2, 3e-8, 1.0 / 3)]
    sums = []
    for every in (1, 2, 3, 32):
        tally = LossTally(every)
        for i, x in enumerate(losses):
            tally.add(x, 8 + i, step=i)
        tally.flush()
        sums.append((tally.total, tally.seen))
    assert all(s == sums[0] for s in sums)  # bit for bit, not approximately
    assert sums[0][1] == sum(8 + i for i in range(len(losses)))


def test_tally_reads_only_when_its_interval_is_full():
    tally = LossTally(3)
    tally.add(torch.tensor(1.0), 4, step=0)
    tally.add(torch.tensor(2.0), 4, step=1)
    assert tally.seen == 0 and tally.mean == 0.0  # nothing read from the device yet
    tally.add(torch.tensor(3.0), 4, step=2)
    assert tally.seen == 12 and tally.mean == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_loss_names_its_own_step_even_when_read_late(bad):
    tally = LossTally(4)
    tally.add(torch.tensor(0.5), 2, step=5)
    tally.add(torch.tensor(bad), 2, step=6)  # not read yet: the run goes on for now
    tally.add(torch.tensor(0.7), 2, step=7)
    with pytest.raises(Diverged, match=rf"loss is {bad} at step 6"):
        tally.add(torch.tensor(0.9), 2, step=8)


def test_a_run_reading_every_few_steps_trains_and_records_the_same(tmp_path, monkeypatch):
    """The whole loop with the GPU's read interval forced on the CPU: same weights, curve, metrics."""
    every_step, every_step_result = _tiny_run(tmp_path / "a", epochs=2, max_steps=7, eval_every=1)
    monkeypatch.setattr(loop, "host_sync_every", lambda device: 3)
    batched, batched_result = _tiny_run(tmp_path / "b", epochs=2, max_steps=7, eval_every=1)
    assert batched_result.curve == every_step_result.curve and len(batched_result.curve) == 2
    assert batched_result.curve[0]["train_loss"] > 0
    assert batched_result.test == every_step_result.test and batched_result.steps == 7
    for (k, a), b in zip(every_step.state_dict().items(), batched.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_a_run_that_diverges_between_reads_still_fails_as_diverged(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "host_sync_every", lambda device: 4)
    real = loop.task_loss
    calls = []

    def poisoned(logits, labels):
        calls.append(1)
        out = real(logits, labels)
        return out * float("nan") if len(calls) == 2 else out

    monkeypatch.setattr(loop, "task_loss", poisoned)
    with pytest.raises(Diverged, match=r"loss is nan at step 1"):
        _tiny_run(tmp_path, max_steps=6)


def test_a_first_step_the_flop_counter_broke_half_way_is_counted_once(tmp_path, monkeypatch):
    """The first step runs under the FLOP counter; when the counter fails after the forward (a
    backward it cannot follow), the step is taken again, and its loss must enter the tally once."""
    _, normal = _tiny_run(tmp_path / "a", epochs=2, max_steps=7, eval_every=1)
    real_backward = torch.Tensor.backward

    def counter_breaks_in_backward(fn):
        def broken(self, *args, **kwargs):
            raise RuntimeError("the counter cannot follow this backward")

        monkeypatch.setattr(torch.Tensor, "backward", broken)
        try:
            fn()
        except RuntimeError:
            return None
        finally:
            monkeypatch.setattr(torch.Tensor, "backward", real_backward)

    monkeypatch.setattr(loop, "step_flops", counter_breaks_in_backward)
    _, retried = _tiny_run(tmp_path / "b", epochs=2, max_steps=7, eval_every=1)
    assert retried.flops_per_step is None and retried.steps == 7
    assert [c["train_loss"] for c in retried.curve] == [c["train_loss"] for c in normal.curve]


def test_mark_and_undo_forget_what_was_added_since():
    tally = LossTally(1)
    tally.add(torch.tensor(1.0), 2, step=0)
    mark = tally.mark()
    tally.add(torch.tensor(5.0), 2, step=1)
    tally.undo(mark)
    assert (tally.total, tally.seen) == (2.0, 2)
    batched = LossTally(4)
    batched.add(torch.tensor(1.0), 2, step=0)
    mark = batched.mark()
    batched.add(torch.tensor(5.0), 2, step=1)
    batched.undo(mark)
    batched.flush()
    assert (batched.total, batched.seen) == (2.0, 2)
