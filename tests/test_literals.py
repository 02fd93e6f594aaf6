"""Unit tests: literals that fit a budget, and helper-source splitting."""

from __future__ import annotations

import ast

from hypothesis import given
from hypothesis import strategies as st

import firmware_helpers
from pytest_boardfarm import literals
from pytest_boardfarm.rawrepl import _stage_pieces


@given(st.binary(max_size=600), st.integers(min_value=7, max_value=300))
def test_pieces_fit_and_rebuild_the_data(data: bytes, room: int) -> None:
    parts = literals.pieces(data, room)
    assert b"".join(parts) == data
    assert all(len(repr(p)) <= room for p in parts)


@given(st.binary(min_size=1, max_size=2000))
def test_staged_source_is_rebuilt_exactly(source: bytes) -> None:
    statements = _stage_pieces(source, 47)
    assert all(len(s) <= 47 for s in statements)
    namespace: dict[str, object] = {}
    for statement in statements:
        assert statement.isascii()
        exec(statement.decode(), namespace)
    assert bytes(namespace["_bf_s"]) == source  # type: ignore[arg-type]


def test_quotes_and_backslashes_cannot_break_out() -> None:
    hostile = b"')\nimport os\nos.remove('x')#\"\\"
    for part in literals.pieces(hostile, 12):
        assert ast.literal_eval(repr(part)) == part


def test_helper_blocks_are_whole_statements() -> None:
    blocks = firmware_helpers.blocks("bf_files.py")
    assert any(b.startswith("try:") and "except ImportError" in b for b in blocks)
    for block in blocks:
        compile(block, "<helper>", "exec")  # each block compiles on its own
        assert not any(line.lstrip().startswith("#") for line in block.splitlines())


def test_helpers_use_only_micropython_1_9_syntax() -> None:
    import ast as python_ast

    for block in firmware_helpers.blocks("bf_files.py"):
        tree = python_ast.parse(block)
        assert not any(isinstance(node, python_ast.JoinedStr) for node in python_ast.walk(tree)), block
