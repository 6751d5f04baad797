"""How the CLI prints what the management API lists: column selection by RabbitMQ's (dotted) names, and a
table like rabbitmqadmin's, tab-separated values, or JSON.  Pure functions of the decoded JSON: no I/O.

Columns are the API's field names; a dotted name reaches into nested objects
(``message_stats.publish_details.rate``, ``arguments.x-queue-type``), as the API's own
``columns`` parameter does.  A cell is empty where an item lacks the field.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

FORMATS = ("table", "tsv", "json")
_MISSING = object()


def split_columns(text: str) -> list[str]:
    """``"name, messages"`` → ``["name", "messages"]``."""
    return [column.strip() for column in text.split(",") if column.strip()]


def key_path(item: Any, column: str) -> list[str] | None:
    """The keys that lead to dotted ``column`` in ``item``, or ``None`` where it has no such field.

    A key that itself contains dots wins over descending (``{"a.b": 1}`` has column ``a.b``).
    """
    if not isinstance(item, dict):
        return None
    if column in item:
        return [column]
    head, dot, rest = column.partition(".")
    while dot:
        if head in item:
            below = key_path(item[head], rest)
            if below is not None:
                return [head, *below]
        more, dot, rest = rest.partition(".")
        head = f"{head}.{more}"
    return None


def pick(item: Any, column: str) -> Any:
    """The value of dotted ``column`` in ``item``, or ``_MISSING``."""
    path = key_path(item, column)
    if path is None:
        return _MISSING
    for key in path:
        item = item[key]
    return item


def select(items: Sequence[Any], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Each item cut to ``columns``, dotted paths kept nested (``{"message_stats": {"publish": 4}}``)."""
    selected = []
    for item in items:
        out: dict[str, Any] = {}
        for column in columns:
            path = key_path(item, column)
            if path is None:
                continue
            target, value = out, item
            for key in path[:-1]:
                value = value[key]
                target = target.setdefault(key, {})
            target[path[-1]] = value[path[-1]]
        selected.append(out)
    return selected


def cell(value: Any) -> str:
    """One value as table text: JSON spelling for everything but strings; lists of strings space-separated
    (as rabbitmqadmin shows tags); tabs and line breaks escaped so that a row stays on one line."""
    if value is _MISSING or value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(element, str) for element in value):
        text = " ".join(value)
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def rows(items: Sequence[Any], columns: Sequence[str]) -> list[list[str]]:
    return [[cell(pick(item, column)) for column in columns] for item in items]


def table(columns: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """rabbitmqadmin's ``--format table``: a ``+---+`` frame, centred headers, left-aligned cells."""
    if not body:
        return "No items"
    widths = [max(len(column), *(len(row[i]) for row in body)) for i, column in enumerate(columns)]
    bar = "+" + "+".join("-" * (width + 2) for width in widths) + "+"
    header = "|" + "|".join(f" {column:^{width}} " for column, width in zip(columns, widths, strict=True)) + "|"
    lines = [bar, header, bar]
    lines += [
        "|" + "|".join(f" {text:<{width}} " for text, width in zip(row, widths, strict=True)) + "|" for row in body
    ]
    lines.append(bar)
    return "\n".join(lines)


def tsv(columns: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A header line, then one tab-separated line per item (only the header when there are none)."""
    return "\n".join("\t".join(row) for row in [list(columns), *body])


def render(items: Sequence[Any], columns: Sequence[str] | None, fmt: str) -> str:
    """``items`` in format ``fmt``; ``columns`` ``None`` (JSON only) keeps every field."""
    if fmt == "json":
        chosen = list(items) if columns is None else select(items, columns)
        return json.dumps(chosen, indent=2, ensure_ascii=False)
    if columns is None:
        raise ValueError("table and tsv output need columns")
    body = rows(items, columns)
    return table(columns, body) if fmt == "table" else tsv(columns, body)
