"""The rate arithmetic of ``core.stats``: series, ranges, and RabbitMQ's ``*_details`` shapes.

The expected numbers are what RabbitMQ 3.10's management API returned for the same samples
(``/api/overview?msg_rates_age=30&msg_rates_incr=10`` after a burst of publishes).
"""

from __future__ import annotations

import pytest

from amqp_server.core.stats import (
    INTERVAL_MS,
    RETENTION_MS,
    Range,
    RangeError,
    Ranges,
    Series,
    Ticks,
    instant_rates,
    parse_range,
    put_group,
)

T0 = 1_796_171_550_000  # a wall-clock instant on the 5 s grid, in ms


def series_of(*samples: tuple[int, int]) -> Series:
    series = Series(samples[0][0])
    for timestamp, value in samples:
        series.add(timestamp, (value,))
    return series


def test_series_keeps_only_changes_and_steps_between_them() -> None:
    series = Series(T0)
    assert series.add(T0, (1, 2))
    assert not series.add(T0 + 5000, (1, 2))  # idle: no new entry
    assert series.add(T0 + 10000, (3, 2))
    assert len(series.values) == 2
    assert series.at(T0 - 1, 2) == (0, 0)  # before the object existed
    assert series.at(T0 + 7000, 2) == (1, 2)
    assert series.at(T0 + 10000, 2) == (3, 2)
    assert series.at(T0 + 99000, 2) == (3, 2)


def test_prune_keeps_the_sample_that_gives_the_oldest_value() -> None:
    series = series_of((T0, 1), (T0 + 5000, 2), (T0 + 10000, 3), (T0 + 15000, 4))
    series.prune(T0 + 12000)
    assert series.times == [T0 + 10000, T0 + 15000]
    assert series.at(T0 + 12000, 1) == (3,)


def test_instant_rate_is_the_last_interval_per_second() -> None:
    series = series_of((T0, 0), (T0 + 5000, 980), (T0 + 10000, 1960))
    ticks = Ticks(now=T0 + 11000, last=T0 + 10000, previous=T0 + 5000)
    assert instant_rates(series, 1, ticks) == [196.0]


def test_instant_rate_falls_to_zero_once_idle() -> None:
    series = series_of((T0, 0), (T0 + 5000, 120))
    series.add(T0 + 10000, (120,))  # no publishes since
    assert instant_rates(series, 1, Ticks(T0 + 6000, T0 + 5000, T0)) == [24.0]
    assert instant_rates(series, 1, Ticks(T0 + 11000, T0 + 10000, T0 + 5000)) == [0.0]


def test_a_new_object_counts_from_zero_and_a_stalled_sampler_shows_zero() -> None:
    series = series_of((T0 + 5000, 50))  # born after the previous sample: its counters were 0 then
    assert instant_rates(series, 1, Ticks(T0 + 6000, T0 + 5000, T0)) == [10.0]
    assert instant_rates(series, 1, Ticks(T0 + 6000, T0 + 5000, None)) == [0.0]  # the sampler's first tick
    old = series_of((T0, 0), (T0 + 5000, 50))
    stale = Ticks(T0 + 5000 + 3 * INTERVAL_MS, T0 + 5000, T0)
    assert instant_rates(old, 1, stale) == [0.0]
    assert instant_rates(None, 2, Ticks(T0)) == [0.0, 0.0]


def test_no_range_details_are_count_and_rate() -> None:
    out: dict[str, object] = {}
    series = series_of((T0, 0), (T0 + 5000, 10))
    put_group(out, ("publish",), (12,), series, Ticks(T0 + 6000, T0 + 5000, T0), None)
    assert out == {"publish": 12, "publish_details": {"rate": 2.0}}


def test_range_details_match_rabbitmq() -> None:
    # RabbitMQ: publish 4332, rate 110.0, avg_rate 144.0, avg 2212.0 over 4 points 10 s apart
    series = series_of((T0, 12), (T0 + 10000, 1272), (T0 + 20000, 3232), (T0 + 30000, 4332))
    window = Range(first=T0, last=T0 + 30000, incr=10000)
    out: dict[str, object] = {}
    put_group(out, ("publish",), (9999,), series, Ticks(T0 + 31000, T0 + 30000, T0 + 25000), window)
    assert out["publish"] == 4332  # the newest point, not the live count
    assert out["publish_details"] == {
        "rate": 110.0,
        "samples": [
            {"sample": 4332, "timestamp": T0 + 30000},
            {"sample": 3232, "timestamp": T0 + 20000},
            {"sample": 1272, "timestamp": T0 + 10000},
            {"sample": 12, "timestamp": T0},
        ],
        "avg_rate": 144.0,
        "avg": 2212.0,
    }


def test_range_points_before_the_object_are_zero_and_one_point_has_no_average() -> None:
    series = series_of((T0 + 10000, 5))
    out: dict[str, object] = {}
    put_group(out, ("messages",), (5,), series, Ticks(T0 + 10000), Range(T0, T0 + 10000, 5000))
    assert [s["sample"] for s in out["messages_details"]["samples"]] == [5, 0, 0]  # type: ignore[index]
    single: dict[str, object] = {}
    put_group(single, ("messages",), (5,), series, Ticks(T0 + 10000), Range(T0 + 10000, T0 + 10000, 60000))
    assert single["messages_details"] == {"rate": 0.0, "samples": [{"sample": 5, "timestamp": T0 + 10000}]}


def test_parse_range_rounds_to_the_increment() -> None:
    now = T0 + 1900
    assert parse_range({"msg_rates_age": "60", "msg_rates_incr": "5"}, "msg_rates", now) == Range(T0 - 60000, T0, 5000)
    assert parse_range({"lengths_age": "60", "lengths_incr": "5"}, "lengths", now, ceil=True) == Range(
        T0 + 5000 - 60000, T0 + 5000, 5000
    )
    assert parse_range({"lengths_age": "60", "lengths_incr": "5"}, "lengths", T0, ceil=True) == Range(
        T0 - 60000, T0, 5000
    )


@pytest.mark.parametrize(
    "params",
    [{}, {"msg_rates_age": "60"}, {"msg_rates_incr": "5"}, {"msg_rates_age": "x", "msg_rates_incr": "5"}],
)
def test_parse_range_without_both_numbers_is_no_range(params: dict[str, str]) -> None:
    assert parse_range(params, "msg_rates", T0) is None


@pytest.mark.parametrize(("age", "incr"), [("0", "5"), ("60", "0"), ("-60", "5"), ("5000", "5")])
def test_parse_range_refuses_what_rabbitmq_refuses(age: str, incr: str) -> None:
    with pytest.raises(RangeError, match=f"^Invalid range parameters: age {int(age)}, incr {int(incr)}$"):
        parse_range({"msg_rates_age": age, "msg_rates_incr": incr}, "msg_rates", T0)


def test_ranges_parse_each_family() -> None:
    ranges = Ranges.parse({"data_rates_age": "30", "data_rates_incr": "10"}, T0)
    assert ranges.lengths is None and ranges.msg_rates is None
    assert ranges.data_rates == Range(T0 - 30000, T0, 10000)


def test_retention_covers_rabbitmqs_ten_minutes() -> None:
    assert RETENTION_MS >= 600_000
