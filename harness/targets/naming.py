"""How records and reports name domains (no heavy imports: the report reads these)."""

from __future__ import annotations

from typing import Any

from harness.config.schema import SPLIT_KEY  # the suite file's key; re-exported for targets and reports


def domain_name(value: Any) -> str | None:
    """How a record and the report name a domain: the target's own domain name, or the other
    target's dataset (``torchvision/usps``, ``sklearn/digits (shifted)``, ``conll/b.txt [val split]``)."""
    if value is None or value == "":
        return None
    if not isinstance(value, dict):
        return str(value)
    name = qualified(value.get("dataset"), value.get("domain"))
    return name if value.get(SPLIT_KEY, "train") == "train" else f"{name} [{value[SPLIT_KEY]} split]"


def qualified(dataset: Any, domain: Any) -> str:
    """A dataset in one of its domains, named so that pairs compare: ``sklearn/digits``,
    ``sklearn/digits (shifted)``."""
    return str(dataset) if domain in (None, "", "original") else f"{dataset} ({domain})"


def evaluated_elsewhere(target: dict[str, Any]) -> bool:
    """Whether a target block's val and test are in another domain than its labelled training
    split (``eval_domain:`` naming another domain or target): their labels are then the target
    domain's, which nothing may train on."""
    evaluated = target.get("eval_domain")
    if evaluated is None:
        return False
    if isinstance(evaluated, dict):
        return True
    return evaluated != (target.get("domain") or "original")
