"""The JSON shapes the management API is compared with RabbitMQ's by (interop_tests/management/shapes.py).

Pure functions on decoded JSON, and a check of the committed reference.json against them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interop_tests.management.shapes import leaf_values, merge, missing_fields, shape_of

REFERENCE = Path(__file__).resolve().parent.parent / "interop_tests" / "management" / "reference.json"


@pytest.mark.parametrize(
    ("value", "shape"),
    [(None, "null"), (True, "bool"), (0, "int"), (0.5, "float"), ("x", "str"), ([], {"array": None})],
)
def test_scalars_and_the_empty_list(value, shape) -> None:
    assert shape_of(value) == shape


def test_objects_nest() -> None:
    assert shape_of({"a": 1, "b": {"rate": 0.0}}) == {"object": {"a": "int", "b": {"object": {"rate": "float"}}}}


def test_list_items_merge_and_keys_some_items_lack_are_optional() -> None:
    shape = shape_of([{"name": "q", "policy": "p"}, {"name": "r"}])
    assert shape == {"array": {"object": {"name": "str", "policy": "str"}, "optional": ["policy"]}}


def test_different_kinds_in_one_place_are_a_union() -> None:
    shape = shape_of([{"socket_opts": []}, {"socket_opts": {"backlog": 128}}, {"socket_opts": None}])
    alternatives = shape["array"]["object"]["socket_opts"]["union"]
    assert sorted(map(json.dumps, alternatives)) == sorted(
        map(json.dumps, ["null", {"array": None}, {"object": {"backlog": "int"}}])
    )


def test_an_int_and_a_float_merge_into_a_float() -> None:
    assert shape_of([0, 0.5, 1]) == {"array": "float"}


def test_merge_does_not_depend_on_order() -> None:
    a, b = shape_of({"x": 1, "y": [None]}), shape_of({"x": "s", "z": [{"k": 1}]})
    assert merge(a, b) == merge(b, a)


def test_identical_shapes_miss_nothing_and_extra_fields_of_ours_are_fine() -> None:
    reference = shape_of({"name": "q", "messages": 1})
    assert missing_fields(reference, reference) == []
    assert missing_fields(reference, shape_of({"name": "q", "messages": 1, "extra": True})) == []


def test_missing_and_mistyped_fields_by_dotted_path() -> None:
    reference = shape_of({"name": "q", "message_stats": {"publish": 1, "publish_details": {"rate": 0.2}}})
    ours = shape_of({"name": 7, "message_stats": {"publish_details": {"rate": "fast"}}})
    assert missing_fields(reference, ours) == ["message_stats.publish", "message_stats.publish_details.rate", "name"]


def test_paths_through_lists_and_the_root() -> None:
    reference = shape_of([{"name": "q", "arguments": {"x-queue-type": "quorum"}}])
    assert missing_fields(reference, shape_of([{"name": "q", "arguments": {}}])) == ["[].arguments.x-queue-type"]
    assert missing_fields(reference, shape_of({"items": []})) == ["$"]


def test_an_int_is_accepted_for_a_float_not_the_other_way_round() -> None:
    assert missing_fields(shape_of({"rate": 0.5}), shape_of({"rate": 0})) == []
    assert missing_fields(shape_of({"messages": 1}), shape_of({"messages": 1.0})) == ["messages"]


def test_a_key_optional_in_the_reference_may_be_absent_but_not_mistyped() -> None:
    reference = shape_of([{"name": "a", "message_stats": {"publish": 1}}, {"name": "b"}])
    assert missing_fields(reference, shape_of([{"name": "c"}])) == []
    assert missing_fields(reference, shape_of([{"name": "c", "message_stats": 3}])) == ["[].message_stats"]


def test_a_key_only_some_of_our_items_have_is_missing() -> None:
    reference = shape_of([{"name": "a", "state": "running"}])
    assert missing_fields(reference, shape_of([{"name": "a", "state": "running"}, {"name": "b"}])) == ["[].state"]


def test_a_union_in_the_reference_accepts_each_alternative() -> None:
    reference = shape_of([{"tag": None}, {"tag": "ctag"}])
    assert missing_fields(reference, shape_of([{"tag": "x"}])) == []
    assert missing_fields(reference, shape_of([{"tag": None}])) == []
    assert missing_fields(reference, shape_of([{"tag": 1}])) == ["[].tag"]


def test_our_union_needs_every_alternative_to_match() -> None:
    assert missing_fields({"object": {"tag": "str"}}, {"object": {"tag": {"union": ["null", "str"]}}}) == ["tag"]


def test_an_empty_list_says_nothing_about_items() -> None:
    assert missing_fields(shape_of([]), shape_of([{"a": 1}])) == []
    assert missing_fields(shape_of([{"a": 1}]), shape_of([])) == []


def test_leaf_values_collect_distinct_scalars_by_path() -> None:
    body = {"items": [{"state": "running", "n": 1}, {"state": "idle", "n": True}, {"state": "running", "n": 1}]}
    assert leaf_values(body) == {"items[].n": [1, True], "items[].state": ["idle", "running"]}
    assert leaf_values("ok") == {"$": ["ok"]}


def test_the_committed_reference_is_consistent() -> None:
    """Ids are unique, literal bodies fit their shapes, values fit their bodies, no node name is stored."""
    reference = json.loads(REFERENCE.read_text())
    records = reference["requests"]
    assert len({record["id"] for record in records}) == len(records)
    for record in records:
        assert {"id", "method", "path", "status", "headers"} <= set(record), record["id"]
        if "body" in record:
            assert record["shape"] == shape_of(record["body"]), record["id"]
            values = leaf_values(record["body"])
            for path, seen in record.get("values", {}).items():
                assert values[path] == seen, (record["id"], path)
        for path, seen in record.get("values", {}).items():
            assert not any(isinstance(value, str) and "@" in value for value in seen), (record["id"], path)
