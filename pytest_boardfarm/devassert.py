"""Assert rewriting for device tests: done on the host, run by MicroPython 1.9.

MicroPython has no assertion rewriting, so a failed ``assert a == b`` on a board
says only ``AssertionError``. Before a device test module is sent, each
``assert`` test that is a single comparison (``==``, ``!=``, ``<``, ``in``,
``is``, ...) becomes ``_bf_c(a, b, op, line)``, and a plain value (a name, call,
attribute or subscript) becomes ``_bf_v(x, line)``. Both helpers live in the
board-side runner (``firmware_helpers/bf_devtest.py``): they return what the test
would have seen and, when it is false, keep ``(line, repr(a), repr(b))`` in
``_bf_e`` for the host to read after the failure.

Only the test expression is replaced, in place: the message stays lazy, every
line keeps its number (missing newlines go inside the call's parentheses), and
the result is plain function-call syntax that MicroPython 1.9 parses.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

# The board's _bf_c picks the operation by index: this order is its if/elif order.
OPERATORS: tuple[tuple[type[ast.cmpop], str], ...] = (
    (ast.Eq, "=="),
    (ast.NotEq, "!="),
    (ast.Lt, "<"),
    (ast.LtE, "<="),
    (ast.Gt, ">"),
    (ast.GtE, ">="),
    (ast.In, "in"),
    (ast.NotIn, "not in"),
    (ast.Is, "is"),
    (ast.IsNot, "is not"),
)
VALUE = ""  # the check of a plain value: ``assert x`` shows ``assert <repr of x>``
_VALUE_NODES = (ast.Name, ast.Call, ast.Attribute, ast.Subscript)


@dataclass(frozen=True)
class Check:
    """One rewritten assert: its lines in the user's file and what it compares."""

    first: int
    last: int
    op: str  # one of OPERATORS' texts, or VALUE


@dataclass(frozen=True)
class Rewritten:
    source: str  # what is sent to the board
    original: str  # what the user wrote: the lines a traceback shows
    checks: dict[int, Check] = field(default_factory=dict)  # by the assert's first line

    def explain(self, record: object, failed_line: int | None) -> str | None:
        """``assert 3 == 4`` from the board's ``_bf_e`` record, when it belongs to the
        assert that failed (a check that failed and was caught earlier must not speak)."""
        if not isinstance(record, tuple) or len(record) < 2 or not isinstance(record[0], int):
            return None
        check = self.checks.get(record[0])
        if check is None or failed_line is None or not check.first <= failed_line <= check.last:
            return None
        if check.op == VALUE:
            return f"assert {record[1]}"
        if len(record) < 3:
            return None
        return f"assert {record[1]} {check.op} {record[2]}"


def rewrite(source: str) -> Rewritten:
    """The module's source with its asserts rewritten; raises SyntaxError as Python would."""
    tree = ast.parse(source)
    offsets = _LineOffsets(source)
    edits: list[tuple[int, int, str]] = []
    checks: dict[int, Check] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        replaced = _replacement(node.test, node.lineno, source, offsets)
        if replaced is None:
            continue
        text, op = replaced
        test = node.test
        edits.append((offsets.index(test.lineno, test.col_offset), _end(test, offsets), text))
        checks[node.lineno] = Check(node.lineno, node.end_lineno or node.lineno, op)
    out = source
    for start, end, text in sorted(edits, reverse=True):
        out = out[:start] + text + out[end:]
    return Rewritten(out, source, checks)


def _replacement(test: ast.expr, line: int, source: str, offsets: _LineOffsets) -> tuple[str, str] | None:
    original = _segment(test, source, offsets)
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        codes = [i for i, (kind, _) in enumerate(OPERATORS) if isinstance(test.ops[0], kind)]
        if not codes:
            return None
        left, right = _segment(test.left, source, offsets), _segment(test.comparators[0], source, offsets)
        call = f"_bf_c({left}, {right}, {codes[0]}, {line}"
        return _close(call, original), OPERATORS[codes[0]][1]
    if isinstance(test, _VALUE_NODES):
        return _close(f"_bf_v({original}, {line}", original), VALUE
    return None


def _close(call: str, original: str) -> str:
    """Close the call with as many newlines inside it as the original spanned: lines keep their numbers."""
    return call + "\n" * max(0, original.count("\n") - call.count("\n")) + ")"


class _LineOffsets:
    """ast gives (line, UTF-8 byte column); slicing the text needs character indexes."""

    def __init__(self, source: str) -> None:
        self.lines = source.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def index(self, line: int, byte_col: int) -> int:
        text = self.lines[line - 1] if line - 1 < len(self.lines) else ""
        return self.starts[line - 1] + len(text.encode("utf-8")[:byte_col].decode("utf-8", "replace"))


def _end(node: ast.expr, offsets: _LineOffsets) -> int:
    return offsets.index(node.end_lineno or node.lineno, node.end_col_offset or 0)


def _segment(node: ast.expr, source: str, offsets: _LineOffsets) -> str:
    """The node's source text, wrapped in parentheses when it spans lines (so it stays
    one expression wherever it lands)."""
    text = source[offsets.index(node.lineno, node.col_offset) : _end(node, offsets)]
    return f"({text})" if "\n" in text else text
