"""Unit tests: literals that fit a budget, and helper-source splitting."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_boardfarm import helper_sources, literals
from pytest_boardfarm.files import checksum
from pytest_boardfarm.rawrepl import _stage_pieces


def bytes_literals(source: str) -> list[bytes]:
    return [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes)
    ]


@given(st.binary(max_size=600), st.integers(min_value=22, max_value=300))
def test_pieces_fit_and_rebuild_the_data(data: bytes, room: int) -> None:
    parts = literals.pieces(data, room)
    assert b"".join(parts) == data
    assert all(len(literals.expression(p)) <= room for p in parts)


@given(st.binary(max_size=40))
def test_expressions_are_never_interned_by_the_board(piece: bytes) -> None:
    # MicroPython's parser interns (for good) every literal of 10 bytes or fewer.
    text = literals.expression(piece)
    assert eval(text, {"__builtins__": {}}) == piece
    assert all(len(value) > literals.INTERNED_UP_TO for value in bytes_literals(text))


@given(st.binary(min_size=1, max_size=2000))
def test_staged_source_is_rebuilt_exactly(source: bytes) -> None:
    statements = _stage_pieces(source, 47)
    assert all(len(s) <= 47 for s in statements)
    namespace: dict[str, object] = {}
    for statement in statements:
        assert statement.isascii()
        exec(statement.decode(), namespace)
    assert bytes(namespace["_bf_s"]) == source  # type: ignore[arg-type]
    for statement in statements:  # no piece, not even the last, is short enough to be interned
        assert all(len(value) > literals.INTERNED_UP_TO for value in bytes_literals(statement.decode()))


def test_quotes_and_backslashes_cannot_break_out() -> None:
    hostile = b"')\nimport os\nos.remove('x')#\"\\"
    for part in literals.pieces(hostile, 12):
        assert ast.literal_eval(repr(part)) == part


def test_helper_blocks_are_whole_statements() -> None:
    blocks = helper_sources.blocks("bf_files.py")
    assert any("try:" in b and "except ImportError" in b for b in blocks)
    assert all(b.startswith("def _bf_") for b in blocks)  # nothing runs, nothing stays, but functions
    for block in blocks:
        compile(block, "<helper>", "exec")  # each block compiles on its own
        assert not any(line.lstrip().startswith("#") for line in block.splitlines())


def test_an_operation_gets_the_helpers_it_calls() -> None:
    assert sorted(helper_sources.needed("bf_files.py", "_bf_state")) == ["_bf_size", "_bf_state"]
    assert sorted(helper_sources.needed("bf_files.py", "_bf_ls")) == ["_bf_ls", "_bf_size"]
    assert sorted(helper_sources.needed("bf_files.py", "_bf_read")) == ["_bf_read"]


def test_helpers_use_only_micropython_1_9_syntax() -> None:
    import ast as python_ast

    for block in helper_sources.blocks("bf_files.py"):
        tree = python_ast.parse(block)
        assert not any(isinstance(node, python_ast.JoinedStr) for node in python_ast.walk(tree)), block


@pytest.mark.parametrize(("helper", "sha256"), [("_bf_sha", True), ("_bf_adler", False)])
def test_board_checksums_match_the_host_twin(helper: str, sha256: bool, tmp_path: Path) -> None:
    # CPython runs the board's code here: the same arithmetic the board does.
    data = bytes(range(256)) * 5 + b"tail"
    (tmp_path / "f.bin").write_bytes(data)
    namespace: dict[str, Any] = {}
    exec(helper_sources.functions("bf_files.py")[helper], namespace)
    assert namespace[helper](str(tmp_path / "f.bin")) == checksum(data, sha256)
