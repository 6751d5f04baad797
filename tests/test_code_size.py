"""Size limits of the broker's code, checked on every run by parsing it (``ast``, nothing is imported).

The rule (ARCHITECTURE.md, "small modules with one job"): no module in ``amqp_server/`` or
``storage/`` over ``MAX_MODULE_LINES`` lines, no function over ``MAX_FUNCTION_LINES`` -- a
module or a function that grows past them is split by job, not trimmed of its comments.
The one exception is a function that is only a dispatch table (a dict literal, or a chain
mapping names to handlers), which reads best whole: those are listed in
``DISPATCH_TABLES`` with the reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("amqp_server", "storage")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60  # from the ``def`` line to the last line of the body, docstring included

# "path/to/module.py:qualified.name" -> why it is a dispatch table. Nothing else belongs here:
# a long function that does work is split into helpers instead. Empty today.
DISPATCH_TABLES: dict[str, str] = {}


def modules() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def functions(path: Path) -> dict[str, int]:
    """Every function and method of ``path`` (nested ones too) by qualified name -> its length in lines."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    assert child.end_lineno is not None
                    found[name] = child.end_lineno - child.lineno + 1
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(), str(path)), "")
    return found


def test_no_module_is_over_the_line_limit() -> None:
    too_long = {
        str(path.relative_to(ROOT)): lines
        for path in modules()
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}, f"modules over {MAX_MODULE_LINES} lines: split them by job"


def test_no_function_is_over_the_line_limit_but_dispatch_tables() -> None:
    too_long = {
        key: lines
        for path in modules()
        for name, lines in functions(path).items()
        if lines > MAX_FUNCTION_LINES and (key := f"{path.relative_to(ROOT)}:{name}") not in DISPATCH_TABLES
    }
    assert too_long == {}, f"functions over {MAX_FUNCTION_LINES} lines: split them into named helpers"


def test_every_listed_dispatch_table_exists_and_needs_its_exception() -> None:
    lengths = {
        f"{path.relative_to(ROOT)}:{name}": lines for path in modules() for name, lines in functions(path).items()
    }
    stale = [key for key in DISPATCH_TABLES if lengths.get(key, 0) <= MAX_FUNCTION_LINES]
    assert stale == [], "no longer over the limit (or gone): remove from DISPATCH_TABLES"


def test_the_scan_finds_long_functions_and_methods(tmp_path: Path) -> None:
    body = "\n".join(f"    x = {i}" for i in range(MAX_FUNCTION_LINES))
    source = tmp_path / "sample.py"
    source.write_text(
        f"class A:\n    def long(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n\ndef short():\n    pass\n"
    )
    assert functions(source) == {"A.long": MAX_FUNCTION_LINES + 1, "short": 2}
