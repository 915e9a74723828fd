"""A run whose inputs' outputs are gone from its cache (a lost cache, a node that never held them, a
resumed suite on Ray) recomputes them, however deep the chain: a student's teacher that starts from
a ``pretrain:`` source is recomputed from the pretrain its student was given."""

from __future__ import annotations

from harness.executors.base import run_plan
from harness.plan import PRETRAIN_INPUT, expand
from harness.run.execute import ExecOptions, execute
from harness.suite import load_suite

SUITE = """\
suite: chain
seeds: [0]
defaults: {epochs: 1, batch_size: 16, lr: 1e-2, max_train_samples: 48, max_eval_samples: 16, device: cpu}
pairs:
  - id: cnn
    source:
      model: test/tiny_cnn
      pretrain: {id: cnn-on-four, target: {dataset: test/tiny_images, num_classes: 4}, strategy: scratch}
    target: {dataset: test/tiny_images, task: image-classification}
strategies:
  - full_finetune
  - distill: {teacher: full_finetune}
"""


def test_a_student_recomputes_a_lost_teacher_that_starts_from_a_pretrain_source(write_suite, tmp_path):
    runs = expand(load_suite(write_suite(SUITE)))
    by = {r.strategy: r for r in runs}
    pre, teacher, student = by["scratch"], by["full_finetune"], by["distill"]
    assert teacher.inputs == {PRETRAIN_INPUT: pre.run_id} and set(student.inputs) == {PRETRAIN_INPUT, "teacher"}
    options = ExecOptions(cache_dir=tmp_path / "cache")
    first = {r.strategy: r for r in run_plan(runs, tmp_path / "results", options).done}
    assert all(r.status == "ok" for r in first.values()), [r.error for r in first.values()]
    outputs = sorted((tmp_path / "cache" / "outputs").iterdir())
    assert outputs  # the pretrain's weights and the teacher's logits, each with its checksum
    for f in outputs:  # every exported output lost: the teacher must be recomputed from a recomputed pretrain
        f.unlink()
    again = execute(student, options, {PRETRAIN_INPUT: pre, "teacher": teacher})
    assert again.status == "ok", again.error
    assert again.config["notes"]["teacher"]["recomputed"] is True
    assert again.metrics == first["distill"].metrics and again.curve == first["distill"].curve
