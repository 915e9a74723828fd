"""Registries: duplicates fail loudly; a miss suggests the nearest names and lists the rest."""

from __future__ import annotations

import pytest

from harness.errors import UnknownNameError
from harness.registry import METRICS, SOURCES, STRATEGIES, TARGETS, TASKS, Registry


def test_duplicate_registration_fails():
    reg = Registry("thing")
    reg.register("a", object(), description="first")
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        reg.register("a", object())


def test_miss_suggests_and_lists():
    with pytest.raises(UnknownNameError) as exc:
        STRATEGIES.get("ful_finetune")
    msg = str(exc.value)
    assert msg.startswith("Unknown strategy 'ful_finetune'. Did you mean: full_finetune")
    assert "Available:" in msg and "linear_probe" in msg


def test_builtins_registered_with_descriptions():
    for reg, names in ((SOURCES, {"packaged", "test", "hf", "timm"}), (TARGETS, {"sklearn", "packaged", "test"}),
                       (STRATEGIES, {"scratch", "linear_probe", "full_finetune"}),
                       (METRICS, {"accuracy", "macro_f1", "seqeval"}), (TASKS, {"token-classification"})):
        assert names <= set(reg.names())
        assert all(e.description for e in reg.entries())


def test_decorator_registers_class_and_returns_it():
    reg = Registry("widget", instantiate=True)

    @reg.register("w")
    class W:
        """A widget."""

    assert isinstance(reg._entries["w"].obj, W)
    assert reg._entries["w"].description == "A widget."


def test_every_open_target_namespace_rejects_an_empty_name():
    for entry in TARGETS.entries():
        if entry.obj.names is None:
            with pytest.raises(ValueError, match="a dataset is needed after the namespace"):
                entry.obj.check_name("")
