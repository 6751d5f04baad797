"""The shape of a JSON value, so our management API can be compared with RabbitMQ's without RabbitMQ.

``reference.json`` (written by ``capture_reference.py`` against a real RabbitMQ) keeps, per request, the
shape of the response body instead of the body itself: values such as timestamps, rates, node names and
pids change from run to run, field names and types do not.  A test computes ``shape_of`` of our body and
asks ``missing_fields(reference_shape, our_shape)`` which of RabbitMQ's fields we lack or type otherwise.

A shape is itself JSON:

- ``"null"``, ``"bool"``, ``"int"``, ``"float"``, ``"str"``: a scalar of that type;
- ``{"object": {key: shape, ...}}``: an object; when the shape merges several objects (the items of a
  list), ``"optional": [key, ...]`` lists the keys that only some of them had (sorted; absent when empty);
- ``{"array": shape}``: a list, ``shape`` being the merge of its items' shapes, or ``null`` when empty;
- ``{"union": [shape, ...]}``: values of different kinds met at one place (a field that is an object in
  one item and ``null`` in another; ``socket_opts`` being ``[]`` or an object); at most one object and one
  array alternative (merged), sorted by their JSON text.  ``int`` merged with ``float`` is ``float``
  (RabbitMQ writes ``consumer_utilisation`` as ``0`` or ``0.5``): a field stays ``int`` only where every
  observed value was an integer.

Paths (in ``missing_fields`` and ``leaf_values``) are dotted keys, ``[]`` for "any item of the list":
``message_stats.publish_details.rate``, ``[].arguments.x-queue-type``; ``$`` is the root itself.
"""

from __future__ import annotations

import json
from typing import Any

Shape = str | dict[str, Any]
SCALARS = ("null", "bool", "int", "float", "str")


def shape_of(value: Any) -> Shape:
    """The shape of a decoded JSON value (see the module docstring)."""
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is a subclass of int
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, dict):
        return {"object": {key: shape_of(item) for key, item in value.items()}}
    if isinstance(value, list):
        item_shape: Shape | None = None
        for item in value:
            item_shape = shape_of(item) if item_shape is None else merge(item_shape, shape_of(item))
        return {"array": item_shape}
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def alternatives(shape: Shape) -> list[Shape]:
    """The shapes a union stands for; a plain shape stands for itself."""
    if isinstance(shape, dict) and "union" in shape:
        return list(shape["union"])
    return [shape]


def kind(shape: Shape) -> str:
    """``object``, ``array`` or the scalar's type name."""
    if isinstance(shape, str):
        return shape
    return "object" if "object" in shape else "array"


def merge(a: Shape, b: Shape) -> Shape:
    """One shape that describes values of shape ``a`` and values of shape ``b``."""
    by_kind: dict[str, Shape] = {}
    found = alternatives(a) + alternatives(b)
    if "float" in found:  # a number seen with a fraction somewhere is a float that may print as 0
        found = [alternative for alternative in found if alternative != "int"]
    for alternative in found:
        seen = by_kind.get(kind(alternative))
        by_kind[kind(alternative)] = alternative if seen is None else _merge_same_kind(seen, alternative)
    merged = sorted(by_kind.values(), key=lambda shape: json.dumps(shape, sort_keys=True))
    return merged[0] if len(merged) == 1 else {"union": merged}


def _merge_same_kind(a: Shape, b: Shape) -> Shape:
    if isinstance(a, str):
        return a
    assert isinstance(b, dict)
    if "array" in a:
        if a["array"] is None or b["array"] is None:
            return {"array": a["array"] if b["array"] is None else b["array"]}
        return {"array": merge(a["array"], b["array"])}
    keys_a, keys_b = a["object"], b["object"]
    fields = {**keys_b, **keys_a}
    for key in set(keys_a) & set(keys_b):
        fields[key] = merge(keys_a[key], keys_b[key])
    optional = set(keys_a).symmetric_difference(keys_b) | set(a.get("optional", ())) | set(b.get("optional", ()))
    merged: dict[str, Any] = {"object": dict(sorted(fields.items()))}
    if optional:
        merged["optional"] = sorted(optional)
    return merged


def missing_fields(reference: Shape, ours: Shape) -> list[str]:
    """Paths RabbitMQ's shape has that ours lacks, or where ours holds another type (sorted).

    A key that RabbitMQ marks optional may be absent; a key we only have in some items is missing.
    An ``int`` is accepted where RabbitMQ has a ``float`` (JSON numbers: a rate of 0 written as ``0``),
    not the other way round.  Extra fields of ours are not reported.  An empty list on either side says
    nothing about its items.
    """
    found: list[str] = []
    _compare(reference, ours, "", found)
    return sorted(set(found))


def _compare(reference: Shape, ours: Shape, path: str, found: list[str]) -> None:
    for alternative in alternatives(ours):
        matches = [ref for ref in alternatives(reference) if _compatible(kind(ref), kind(alternative))]
        if not matches:
            found.append(path or "$")
            continue
        ref = matches[0]
        if kind(ref) == "object":
            assert isinstance(ref, dict) and isinstance(alternative, dict)
            ours_optional = set(alternative.get("optional", ()))
            for key, ref_field in ref["object"].items():
                field_path = f"{path}.{key}" if path else key
                if key in alternative["object"]:
                    if key in ours_optional and key not in ref.get("optional", ()):
                        found.append(field_path)
                    _compare(ref_field, alternative["object"][key], field_path, found)
                elif key not in ref.get("optional", ()):
                    found.append(field_path)
        elif kind(ref) == "array":
            assert isinstance(ref, dict) and isinstance(alternative, dict)
            if ref["array"] is not None and alternative["array"] is not None:
                _compare(ref["array"], alternative["array"], f"{path}[]", found)


def _compatible(reference_kind: str, our_kind: str) -> bool:
    return reference_kind == our_kind or (reference_kind == "float" and our_kind == "int")


def leaf_values(value: Any, path: str = "") -> dict[str, list[Any]]:
    """Every scalar in ``value`` by path: ``{path: [distinct values, sorted by their JSON text]}``.

    Lists merge their items under ``path[]``, so ``[].state`` of a queue listing is the set of states.
    """
    found: dict[str, dict[str, Any]] = {}
    _collect(value, path, found)
    return {key: [values[text] for text in sorted(values)] for key, values in sorted(found.items())}


def _collect(value: Any, path: str, found: dict[str, dict[str, Any]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _collect(item, f"{path}.{key}" if path else key, found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, f"{path}[]", found)
    else:
        found.setdefault(path or "$", {})[json.dumps(value)] = value  # by JSON text: True and 1 stay apart
