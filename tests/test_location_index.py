"""storage.location_index: the compact id -> location map behind a delayed exchange's held messages, checked
against a dict under every order of ids (increasing, reused, far ahead, removed at random)."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from storage.location_index import MAX_GAP, TRIM_AT, LocationIndex

operations = st.lists(
    st.tuples(st.sampled_from(["put", "pop"]), st.integers(0, 3 * MAX_GAP), st.integers(0, 2**50)), max_size=200
)


@given(operations)
def test_behaves_as_a_dict(steps: list[tuple[str, int, int]]) -> None:
    index, model = LocationIndex(), {}
    for operation, key, location in steps:
        if operation == "put":
            assert index.put(key, location) == model.get(key)
            model[key] = location
        else:
            assert index.pop(key) == model.pop(key, None)
        assert len(index) == len(model)
    assert list(index.items()) == sorted(model.items())
    for key, location in model.items():
        assert index.get(key) == location


def test_ids_removed_at_random_free_the_front_of_the_array() -> None:
    index = LocationIndex()
    ids = list(range(1, 100_001))
    for key in ids:
        index.put(key, key * 8)
    random.Random(1).shuffle(ids)
    for key in ids[:-10]:
        index.pop(key)
    remaining = sorted(ids[-10:])
    assert list(index.items()) == [(key, key * 8) for key in remaining]
    assert len(index._slots) <= max(2 * TRIM_AT, remaining[-1] - remaining[0] + 1) * 2
