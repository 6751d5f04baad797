"""RabbitMQ's listing conventions for ``GET`` of a collection: filter, sort, page, pick columns.

Pure functions over lists of plain dicts, so they are tested without a server.  As
RabbitMQ's management plugin (probed on 3.10):

* without ``page`` the whole list comes back, sorted, with ``columns`` applied; ``name``
  and ``use_regex`` filter only a paged request;
* ``page`` (from 1) and ``page_size`` (default 100, at most 500) answer an object
  ``{filtered_count, item_count, items, page, page_count, page_size, total_count}``;
  a page past the last one is 400 ``page_out_of_range`` (page 1 of nothing is fine);
* ``name`` matches case-insensitively, as a substring or (``use_regex=true``) a regular
  expression searched anywhere in the name;
* ``sort`` is a dotted key (``message_stats.publish``), ``sort_reverse=true`` reverses;
  items without the key sort first, as RabbitMQ's ``undefined`` does;
* ``columns`` is a comma-separated list of dotted paths; a path through a missing key
  is left out, and one into an AMQP table (``arguments.x-max-length``) gives the whole table;
* an unknown ``sort`` key keeps the default order (vhost, name).

A user-supplied regex must not hang the event loop: Python's ``re`` backtracks
exponentially on patterns like ``(a+)+$``, and there is no way to interrupt it.  The
``regex`` module takes a ``timeout``; we compile with it, cap the pattern at
``MAX_REGEX_LENGTH`` characters and give the searches of one listing ``REGEX_TIMEOUT``
seconds in all, so a bad pattern costs at most that and answers 400 instead of blocking every client.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import regex

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500
MAX_REGEX_LENGTH = 256  # characters of a use_regex pattern; longer ones are refused
REGEX_TIMEOUT = 0.05  # seconds one pattern may spend on the whole listing
# AMQP tables (and policy definitions): RabbitMQ returns them whole for a dotted column into them
# (``arguments.x-queue-type`` gives all of ``arguments``), while statistics objects are cut to the path.
WHOLE_COLUMNS = frozenset({"arguments", "client_properties", "properties", "definition", "effective_policy_definition"})


class ListingError(Exception):
    """A bad listing parameter: the 400 answer's ``error`` and ``reason``."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


@dataclass(frozen=True)
class Listing:
    """The listing parameters of one request."""

    page: int | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    name: str | None = None
    use_regex: bool = False
    sort: str | None = None
    sort_reverse: bool = False
    columns: tuple[str, ...] = ()


def parse(query: Mapping[str, str]) -> Listing:
    """The ``Listing`` of a query string; raises ``ListingError`` with RabbitMQ's answers."""
    page_text, size_text = query.get("page"), query.get("page_size")
    page: int | None = None
    page_size = DEFAULT_PAGE_SIZE
    name = query.get("name") or None
    use_regex = query.get("use_regex", "false").lower() == "true"
    if page_text is not None:
        try:
            page = int(page_text)
            page_size = int(size_text) if size_text is not None else DEFAULT_PAGE_SIZE
        except ValueError:
            raise ListingError("bad_request", "Pagination parameters are invalid") from None
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ListingError(
                "invalid_pagination_parameters",
                f"Invalid pagination parameters: page number {page}, page size "
                f"{size_text if size_text is not None else 'undefined'}",
            )
        if name is not None and use_regex:
            _compile(name)  # refuse a bad pattern before listing anything
    columns = tuple(column.strip() for column in query.get("columns", "").split(",") if column.strip())
    return Listing(
        page=page,
        page_size=page_size,
        name=name,
        use_regex=use_regex,
        sort=query.get("sort") or None,
        sort_reverse=query.get("sort_reverse", "false").lower() == "true",
        columns=columns,
    )


def _compile(pattern: str) -> regex.Pattern[str]:
    if len(pattern) > MAX_REGEX_LENGTH:
        raise ListingError("bad_request", "Pagination parameters are invalid")
    try:
        return regex.compile(pattern, regex.IGNORECASE)
    except regex.error:
        raise ListingError("bad_request", "Pagination parameters are invalid") from None


def lookup(item: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` of ``item``, or None where a key is missing."""
    value: Any = item
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def sort_items(items: list[dict[str, Any]], keys: tuple[str, ...], reverse: bool = False) -> list[dict[str, Any]]:
    """``items`` ordered by the dotted ``keys`` (missing values first, then numbers, then text)."""

    def key(item: dict[str, Any]) -> tuple[tuple[int, Any], ...]:
        return tuple(_rank(lookup(item, path)) for path in keys)

    return sorted(items, key=key, reverse=reverse)


def _rank(value: Any) -> tuple[int, Any]:
    """A sort key that never compares unlike types: missing < booleans/numbers < strings < the rest."""
    if value is None:
        return (0, 0)
    if isinstance(value, (bool, int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value.encode())  # byte order, as Erlang compares binaries: "Z" before "a"
    return (3, repr(value))


def select_columns(item: Mapping[str, Any], columns: tuple[str, ...]) -> dict[str, Any]:
    """``item`` with only the dotted ``columns`` (nested objects keep just the selected keys)."""
    selected: dict[str, Any] = {}
    for column in columns:
        _copy_path(item, selected, column.split("."))
    return selected


def _copy_path(source: Mapping[str, Any], target: dict[str, Any], keys: list[str]) -> None:
    head, rest = keys[0], keys[1:]
    if head not in source:
        return
    value = source[head]
    if not rest or head in WHOLE_COLUMNS:
        target[head] = value
    elif isinstance(value, Mapping):
        child = target.setdefault(head, {})
        if isinstance(child, dict):
            _copy_path(value, child, rest)


def _matches(listing: Listing, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if listing.name is None:
        return items
    if not listing.use_regex:
        needle = listing.name.lower()
        return [item for item in items if needle in str(item.get("name", "")).lower()]
    pattern = _compile(listing.name)
    deadline = time.monotonic() + REGEX_TIMEOUT
    try:
        return [
            item
            for item in items
            if pattern.search(str(item.get("name", "")), timeout=max(deadline - time.monotonic(), 0.001)) is not None
        ]
    except TimeoutError:
        raise ListingError("bad_request", "Pagination parameters are invalid") from None


def apply(
    listing: Listing, items: list[dict[str, Any]], default_sort: tuple[str, ...] = ("name",)
) -> list[dict[str, Any]] | dict[str, Any]:
    """What ``GET`` answers for ``items``: a list, or with ``page`` the pagination object."""
    ordered = sort_items(items, default_sort, listing.sort_reverse and not listing.sort)
    if listing.sort:  # a stable sort on top of the default order: ties (and an unknown key) keep it
        ordered = sort_items(ordered, (listing.sort,), listing.sort_reverse)
    if listing.page is None:
        return [select_columns(item, listing.columns) for item in ordered] if listing.columns else ordered
    filtered = _matches(listing, ordered)
    size = listing.page_size
    page_count = -(-len(filtered) // size)
    if listing.page > max(page_count, 1):
        raise ListingError(
            "page_out_of_range",
            f"Page out of range, page: {listing.page} page size: {size}, len: {len(filtered)}",
        )
    start = (listing.page - 1) * size
    page = filtered[start : start + size]
    if listing.columns:
        page = [select_columns(item, listing.columns) for item in page]
    return {
        "filtered_count": len(filtered),
        "item_count": len(page),
        "items": page,
        "page": listing.page,
        "page_count": page_count,
        "page_size": size,
        "total_count": len(items),
    }
