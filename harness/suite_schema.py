"""The JSON Schema of suite files, generated from the models the validator checks them with.

Editors (``yaml-language-server``, through the modeline every file in ``suites/`` starts with)
complete keys, show each key's description and flag a wrong key or type as it is typed. The
schema is built from the same pydantic models :mod:`harness.config.load` validates with
(:class:`TrainConfig`, each strategy's, source's and target's ``Params``) and the same key lists,
so it cannot drift from the validator: a test compares the committed ``docs/suite.schema.json``
with what :func:`suite_schema` generates now.

It checks shapes only. What needs the whole suite or a registry look-up beyond a namespace (a
model name that exists, a task the target provides, a label named by ``pairs[].strategies``, a
teacher that exists) is left to ``harness validate``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from pydantic import BaseModel

from harness.config.schema import SEARCH_OPTIONS, SLUG, TRAIN_KEYS, TrainConfig
from harness.search import DISTRIBUTIONS, SEARCH_METHODS, SELECT_BY
from harness.suite import PAIR_KEYS, PRETRAIN_KEYS, TOP_KEYS

SCHEMA_ID = "https://json-schema.org/draft/2020-12/schema"
MODELINE = "# yaml-language-server: $schema=../docs/suite.schema.json"
_DOMAIN_KEYS = ("unlabeled", "eval_domain")  # a target's keys that may name another target block


def _properties(model: type[BaseModel], defs: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON Schema properties; the definitions they refer to are merged into ``defs``."""
    schema = model.model_json_schema(ref_template="#/$defs/{model}")
    for name, definition in schema.get("$defs", {}).items():
        if defs.setdefault(name, definition) != definition:
            raise ValueError(f"two parameter models define {name!r} differently; rename one of them")
    props = schema.get("properties", {})
    for prop in props.values():
        prop.pop("title", None)  # pydantic's "Lr" / "Batch Size": the key itself says as much
    return props


def _train_properties(defs: dict[str, Any]) -> dict[str, Any]:
    """The training keys, each a reference to one definition: every block that takes them (defaults,
    a pair's train, each strategy, each override) shares it, which keeps the schema small."""
    out = {}
    for key, prop in _properties(TrainConfig, defs).items():
        defs[f"train.{key}"] = prop
        out[key] = {"$ref": f"#/$defs/train.{key}"}
    return out


def _search(param_keys: set[str]) -> dict[str, Any]:
    """A ``search:`` block: the options, and per key a grid or a distribution."""
    values = {
        "anyOf": [
            {"type": "array", "minItems": 1, "description": "a grid: the candidate values"},
            {"type": "object", "minProperties": 1, "maxProperties": 1,
             "description": "a distribution for method random or tpe: {log_uniform|uniform|int: [low, high]}",
             "propertyNames": {"enum": list(DISTRIBUTIONS)},
             "additionalProperties": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "number"}}},
        ]}
    return {
        "type": "object",
        "description": "keys to choose on the validation split: per training key or strategy parameter a grid "
                       "(a list of values) or a distribution, and the search's options",
        "properties": {
            "method": {"enum": list(SEARCH_METHODS), "description": "grid (default), random or tpe (Optuna)"},
            "trials": {"type": "integer", "minimum": 1, "description": "points drawn by random or tpe"},
            "selection_seeds": {"type": "array", "minItems": 1, "uniqueItems": True,
                                "items": {"type": "integer", "minimum": 0},
                                "description": "the seeds the trials run on (default: the suite's first)"},
            "extend_edges": {"type": "integer", "minimum": 0, "maximum": 10,
                             "description": "grid: when the best point sits at a numeric key's edge, try up to "
                             "this many steps beyond it (the grid's ratio), one at a time (default 0)"},
            "select_by": {"enum": list(SELECT_BY),
                          "description": "what chooses the point: oracle (default: the pair's labelled validation "
                                         "split), or a validator that reads no target label (source_val, dev, "
                                         "entropy, snd; a pair with unlabeled target data)"},
        },
        "propertyNames": {"enum": sorted((TRAIN_KEYS | param_keys | SEARCH_OPTIONS) - {"label", "search"})},
        "additionalProperties": values,
    }


def _train_block(defs: dict[str, Any], description: str) -> dict[str, Any]:
    return {"type": "object", "description": description,
            "properties": {**_train_properties(defs), "search": {"$ref": "#/$defs/search"}},
            "additionalProperties": False}


def _strategy_body(name: str, model: type[BaseModel], description: str, defs: dict[str, Any],
                   label: bool) -> dict[str, Any]:
    """A strategy's block: its own parameters, the training keys it overrides, its search."""
    props = {**_train_properties(defs), **_properties(model, defs), "search": {"$ref": "#/$defs/search"}}
    if label:
        props["label"] = {"type": "string", "pattern": SLUG,
                          "description": "the cell's name when one strategy appears twice (default: the strategy)"}
    return {"description": description, "anyOf": [{"type": "null"}, {
        "type": "object", "properties": props, "additionalProperties": False}]}


def _component(kind: str, entries: list[Any], defs: dict[str, Any], pretrain: dict[str, Any] | None,
               other_target: dict[str, Any] | None) -> dict[str, Any]:
    """A ``source:`` or ``target:`` block: ``model``/``dataset`` names a registered namespace, whose
    ``Params`` say which other keys the block takes (one ``if``/``then`` per namespace)."""
    key = "model" if kind == "source" else "dataset"
    names = [e.name for e in entries]
    head: dict[str, Any] = {
        key: {"type": "string", "pattern": f"^({'|'.join(re.escape(n) for n in names)})/.+",
              "description": f"<namespace>/<name> of a registered {kind}; namespaces: " + "; ".join(
                  f"{e.name}: {e.description}" for e in entries)}}
    if kind == "target":
        head["task"] = {"type": "string", "description": "the task to train and score (default: the target's own)"}
    for k, prop in head.items():
        defs[f"{kind}.{k}"] = prop
    head = {k: {"$ref": f"#/$defs/{kind}.{k}"} for k in head}
    branches = []
    for e in entries:
        props = {**head, **_properties(e.obj.Params, defs)}
        if pretrain is not None and "pretrain" in props:
            props["pretrain"] = pretrain
        if other_target is not None:
            for k in _DOMAIN_KEYS:  # another target named as a domain, as the validator accepts
                props[k] = {"description": props.get(k, {}).get("description", f"another target as the {k} domain"),
                            "anyOf": [other_target, *([props[k]] if k in props else [])]}
        branches.append({"if": {"properties": {key: {"type": "string", "pattern": f"^{re.escape(e.name)}/"}},
                                "required": [key]},
                         "then": {"properties": props, "additionalProperties": False}})
    return {"type": "object", "required": [key], "properties": head, "allOf": branches}


def suite_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a suite file, with each key's description."""
    from harness.registry import SOURCES, STRATEGIES, TARGETS

    defs: dict[str, Any] = {}
    strategies = list(STRATEGIES.entries())
    all_params = {k for e in strategies for k in e.obj.Params.model_fields}
    sources, targets = list(SOURCES.entries()), list(TARGETS.entries())
    # one search block for every level: a key may be any training key or a parameter of any strategy
    # (the validator narrows it to the strategies in scope)
    defs["search"] = _search(all_params)

    # another target as a domain: a target block without domains of its own
    other = {"type": "object", "required": ["dataset"], "description": "another target, named as in `target:` "
             "(`split:` picks its split for `unlabeled:`)", "properties": {"dataset": {"type": "string"},
                                                                           "split": {"enum": ["train", "val", "test"]}}}
    defs["target"] = _component("target", targets, defs, None, other)
    defs["target"]["description"] = "the dataset and the task a source is transferred to"
    strategy_names = [e.name for e in strategies]
    defs["strategy"] = {
        "description": "a strategy: its name, or {name: {its parameters, training keys, label, search}}",
        "anyOf": [
            {"enum": strategy_names},
            {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
             "properties": {e.name: _strategy_body(e.name, e.obj.Params, e.description, defs, label=True)
                            for e in strategies}},
        ]}
    pretrain = {
        "type": "object", "required": ["target"], "additionalProperties": False,
        "description": "train this source on another target first (a node of the plan); every run that "
                       "transfers the source starts from those weights",
        "properties": {
            "id": {"type": "string", "pattern": SLUG, "description": "names the pretrained weights"},
            "target": {"$ref": "#/$defs/target"},
            "strategy": {"$ref": "#/$defs/strategy"},
            "train": _train_block(defs, "the pretraining's training keys"),
            "seed": {"type": "integer", "minimum": 0, "description": "the pretraining's seed"},
        }}
    assert set(pretrain["properties"]) == set(PRETRAIN_KEYS), "the pretrain keys changed: update the schema"
    defs["source"] = _component("source", sources, defs, pretrain, None)
    defs["source"]["description"] = "the pretrained model to transfer"
    override = {"type": "object", "description": "per strategy label: parameters and training keys for this pair "
                "only", "additionalProperties": {"anyOf": [{"type": "null"}, {
                    "type": "object", "additionalProperties": False,
                    "properties": {**_train_properties(defs), **{k: {} for k in sorted(all_params)},
                                   "search": {"$ref": "#/$defs/search"}}}]}}
    pair = {
        "type": "object", "required": ["id", "source", "target"], "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": SLUG, "description": "the pair's name (it names files)"},
            "source": {"$ref": "#/$defs/source"},
            "target": {"$ref": "#/$defs/target"},
            "train": _train_block(defs, "training keys for this pair, over `defaults`"),
            "overrides": override,
            "strategies": {"type": "array", "minItems": 1, "items": {"type": "string"},
                           "description": "the strategy labels this pair runs (default: every strategy)"},
        }}
    assert set(pair["properties"]) == set(PAIR_KEYS), "the pair keys changed: update the schema"
    top = {
        "suite": {"type": "string", "pattern": SLUG, "description": "the suite's name: results/<suite>/, reports/<suite>.md"},
        "description": {"type": "string", "description": "what the suite measures, shown in its report"},
        "seeds": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "integer", "minimum": 0},
                  "description": "every cell runs once per seed"},
        "defaults": _train_block(defs, "training keys every cell starts from"),
        "pairs": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/pair"},
                  "description": "source → target pairs"},
        "strategies": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/strategy"},
                       "description": "the strategies every pair runs"},
        "price_per_gpu_hour": {"type": "number", "minimum": 0, "description": "turns GPU-hours into a price column"},
        "budget_check": {"type": "boolean", "description": "every trained cell also runs its first seed at twice "
                         "its epochs (the chosen point of a search); the report marks a cell ↗ when that gains "
                         "more than the validation noise (default: false)"},
    }
    assert set(top) == set(TOP_KEYS), "the top-level keys changed: update the schema"
    defs["pair"] = pair
    return {
        "$schema": SCHEMA_ID,
        "$id": "suite.schema.json",
        "title": "harness suite file",
        "description": "A benchmark suite: pairs × strategies × seeds (generated by `harness schema`; "
                       "`harness validate` checks what a schema cannot).",
        "type": "object",
        "required": ["suite", "seeds", "pairs", "strategies"],
        "additionalProperties": False,
        "properties": top,
        "$defs": dict(sorted(defs.items())),
    }


def schema_text() -> str:
    """The schema as ``harness schema`` writes it: stable key order, one trailing newline."""
    return json.dumps(suite_schema(), indent=2, ensure_ascii=False) + "\n"


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading numbers as YAML 1.2 does, as editors do: ``1e-3`` is a float
    (YAML 1.1, PyYAML's, reads it as a string that the validator then parses)."""


Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$"),
    list("-+0123456789."))


def load_yaml12(text: str) -> Any:
    """A suite file's data as a schema-aware editor reads it."""
    return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
