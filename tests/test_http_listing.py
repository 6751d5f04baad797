"""The management API's listing conventions (``amqp_server.http.listing``), sans-IO: RabbitMQ 3.10's answers."""

from __future__ import annotations

import time

import pytest

from amqp_server.http import listing
from amqp_server.http.listing import Listing, ListingError

QUEUES = [
    {"name": "beta", "vhost": "/", "messages": 2, "arguments": {"x-max-length": 5}},
    {"name": "Gamma", "vhost": "/", "messages": 10, "arguments": {}},
    {"name": "alpha", "vhost": "v1", "messages": 0, "arguments": {}},
]


def names(answer: object) -> list[str]:
    items = answer["items"] if isinstance(answer, dict) else answer
    assert isinstance(items, list)
    return [item["name"] for item in items]


def test_without_page_the_whole_list_comes_back_sorted_by_name_in_byte_order() -> None:
    assert names(listing.apply(listing.parse({}), QUEUES)) == ["Gamma", "alpha", "beta"]


def test_name_filters_only_a_paged_request() -> None:
    assert names(listing.apply(listing.parse({"name": "alpha"}), QUEUES)) == ["Gamma", "alpha", "beta"]


def test_a_page_answers_rabbitmqs_pagination_object() -> None:
    answer = listing.apply(listing.parse({"page": "2", "page_size": "2"}), QUEUES)
    assert answer == {
        "filtered_count": 3,
        "item_count": 1,
        "items": [QUEUES[0]],
        "page": 2,
        "page_count": 2,
        "page_size": 2,
        "total_count": 3,
    }


def test_the_default_page_size_is_100() -> None:
    answer = listing.apply(listing.parse({"page": "1"}), QUEUES)
    assert isinstance(answer, dict) and answer["page_size"] == 100 and answer["page_count"] == 1


def test_name_is_a_case_insensitive_substring() -> None:
    answer = listing.apply(listing.parse({"page": "1", "name": "AMM"}), QUEUES)
    assert names(answer) == ["Gamma"]
    assert isinstance(answer, dict) and (answer["filtered_count"], answer["total_count"]) == (1, 3)


def test_use_regex_searches_the_name_case_insensitively() -> None:
    answer = listing.apply(listing.parse({"page": "1", "name": "^(g|B)", "use_regex": "true"}), QUEUES)
    assert names(answer) == ["Gamma", "beta"]


def test_page_one_of_nothing_is_fine_and_page_two_is_out_of_range() -> None:
    answer = listing.apply(listing.parse({"page": "1", "name": "zzz"}), QUEUES)
    assert isinstance(answer, dict) and (answer["items"], answer["page_count"]) == ([], 0)
    with pytest.raises(ListingError) as raised:
        listing.apply(listing.parse({"page": "2", "name": "zzz"}), QUEUES)
    assert (raised.value.error, raised.value.reason) == (
        "page_out_of_range",
        "Page out of range, page: 2 page size: 100, len: 0",
    )


@pytest.mark.parametrize(
    ("query", "error", "reason"),
    [
        (
            {"page": "1", "page_size": "501"},
            "invalid_pagination_parameters",
            "Invalid pagination parameters: page number 1, page size 501",
        ),
        (
            {"page": "0"},
            "invalid_pagination_parameters",
            "Invalid pagination parameters: page number 0, page size undefined",
        ),
        ({"page": "x"}, "bad_request", "Pagination parameters are invalid"),
        ({"page": "1", "name": "(", "use_regex": "true"}, "bad_request", "Pagination parameters are invalid"),
        ({"page": "1", "name": "a" * 257, "use_regex": "true"}, "bad_request", "Pagination parameters are invalid"),
    ],
)
def test_bad_parameters_get_rabbitmqs_400s(query: dict[str, str], error: str, reason: str) -> None:
    with pytest.raises(ListingError) as raised:
        listing.apply(listing.parse(query), QUEUES)
    assert (raised.value.error, raised.value.reason) == (error, reason)


def test_a_catastrophic_regex_gives_up_instead_of_hanging() -> None:
    items = [{"name": "a" * 40 + "b"} for _ in range(50)]
    started = time.monotonic()
    with pytest.raises(ListingError):
        listing.apply(listing.parse({"page": "1", "name": "(a|aa)+$", "use_regex": "true"}), items)
    assert time.monotonic() - started < 5  # a bound, not a speed claim: re would take longer than the universe


def test_sort_by_a_dotted_key_and_reverse() -> None:
    answer = listing.apply(listing.parse({"sort": "messages", "sort_reverse": "true"}), QUEUES)
    assert names(answer) == ["Gamma", "beta", "alpha"]
    answer = listing.apply(listing.parse({"sort": "arguments.x-max-length"}), QUEUES)
    assert names(answer)[-1] == "beta"  # items without the key sort first


def test_an_unknown_sort_key_keeps_the_default_order() -> None:
    assert names(listing.apply(listing.parse({"sort": "nope"}), QUEUES)) == ["Gamma", "alpha", "beta"]


def test_columns_keep_dotted_paths_and_drop_missing_ones() -> None:
    items = [{"name": "q", "message_stats": {"publish": 4, "ack": 1}}, {"name": "r"}]
    answer = listing.apply(listing.parse({"columns": "name,message_stats.publish,bogus.x"}), items)
    assert answer == [{"name": "q", "message_stats": {"publish": 4}}, {"name": "r"}]


def test_a_column_into_an_amqp_table_gives_the_whole_table() -> None:
    items = [{"name": "q", "arguments": {"x-max-length": 5, "x-queue-type": "classic"}}]
    answer = listing.apply(listing.parse({"columns": "arguments.x-queue-type"}), items)
    assert answer == [{"arguments": {"x-max-length": 5, "x-queue-type": "classic"}}]


def test_columns_apply_to_the_items_of_a_page() -> None:
    answer = listing.apply(Listing(page=1, columns=("name", "vhost")), QUEUES)
    assert isinstance(answer, dict) and answer["items"][0] == {"name": "Gamma", "vhost": "/"}


def test_values_of_different_types_sort_without_error() -> None:
    items = [{"name": "a", "x": "text"}, {"name": "b", "x": 3}, {"name": "c", "x": None}, {"name": "d", "x": [1]}]
    assert names(listing.apply(listing.parse({"sort": "x"}), items)) == ["c", "b", "a", "d"]
