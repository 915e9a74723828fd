"""Records for tests that read records (the report, the gate, the search's choice): one factory, so
that a field added to ``RunRecord`` is filled in one place and every test builds its records alike."""

from __future__ import annotations

from typing import Any

from harness.records import RunRecord

T0 = "2026-01-01T00:00:00+00:00"
FAILED = {"type": "Diverged", "message": "loss is nan"}
_UNSET: Any = object()  # tells "no error given" from an explicit error=None


def make_record(label: str = "full_finetune", seed: int = 0, acc: float | None = None, *, pair: str = "p",
                suite: str = "s", strategy: str | None = None, status: str = "ok",
                task: str | None = "image-classification", primary_metric: str | None = "accuracy",
                extra: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
                error: dict[str, Any] | None = _UNSET, run_id: str | None = None, at: str = T0,
                **fields: Any) -> RunRecord:
    """A ``RunRecord`` whose required fields are filled; any other field is a keyword override.

    Metrics: ``{primary_metric: acc, **extra}`` when the run is ok, none when it is not (as
    ``execute`` writes a failure); ``metrics`` replaces both rules. A run that is not ok carries
    ``FAILED`` unless ``error`` is given. ``run_id`` defaults to ``<pair>.<label>.s<seed>``, the
    strategy to the label, and ``at`` is both the start and the finish time.
    """
    ok = status == "ok"
    if metrics is None:
        metrics = ({} if acc is None else {primary_metric: acc}) | (extra or {}) if ok else {}
    if error is _UNSET:
        error = None if ok else dict(FAILED)
    fields.setdefault("config", {})
    fields.setdefault("started_at", at)
    fields.setdefault("finished_at", at)
    return RunRecord(
        run_id=run_id or f"{pair}.{label}.s{seed}", suite=suite, pair=pair, strategy=strategy or label, label=label,
        seed=seed, status=status, task=task, primary_metric=primary_metric, metrics=metrics, error=error, **fields)
