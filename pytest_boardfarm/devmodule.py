"""A device test module read on the host: never imported, only parsed.

The module is cut into top-level statements (*chunks*): the test functions
(``def test_*():``), each sent to the board on its own when its test runs, and
the rest (imports, helpers, ``setup``/``teardown``), sent once per board. The
``boardfarm = {...}`` literal is read here with ``ast.literal_eval`` and never
sent. A board names the source it runs ``<stdin>`` or ``<string>`` and counts
lines from the chunk's start, in a traceback and in a SyntaxError alike;
:meth:`DeviceSource.traceback` puts the user's file name and line numbers back.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .devassert import Rewritten, rewrite
from .selection import marker_problems

SELECTION_NAME = "boardfarm"
SETUP_NAMES = ("setup", "teardown", "setup_function", "teardown_function")
_FRAME = re.compile(r'^(\s*)File "(<stdin>|<string>)", line (\d+), in (\S+)\s*$')
# A SyntaxError's frame has no function: the compiler's, for the source it was given.
_COMPILE_FRAME = re.compile(r'^(\s*)File "(<stdin>|<string>)", line (\d+)\s*$')
_RUNNER_PREFIX = "_bf"
# Adjacent top-level statements (imports, constants, small helpers) go to the board
# together up to this many lines: one exchange instead of one each.
PRELUDE_GROUP_LINES = 12


class DeviceSourceError(Exception):
    """The device test module cannot be used as written: file, line and what is wrong."""


@dataclass(frozen=True)
class Chunk:
    """One top-level statement: where it starts in the user's file and what it defines."""

    first: int  # 1-based line in the user's file
    last: int
    source: str
    names: frozenset[str]  # functions and classes defined in it, at any depth: traceback frames name them


@dataclass(frozen=True)
class DeviceSource:
    path: str  # as reports show it (relative to the rootdir)
    rewritten: Rewritten
    prelude: tuple[Chunk, ...] = ()
    tests: dict[str, Chunk] = field(default_factory=dict)  # in file order
    selection: dict[str, Any] = field(default_factory=dict)
    defines: frozenset[str] = frozenset()  # top-level names among SETUP_NAMES

    def owner(self, name: str) -> Chunk | None:
        """The chunk that defines function ``name`` (the last one, as on the board)."""
        found = None
        for chunk in (*self.prelude, *self.tests.values()):
            if name in chunk.names:
                found = chunk
        return found

    def traceback(self, text: str, running: Chunk | None, *, keep_module_frame: bool) -> str:
        """The board's traceback with this file's name and line numbers.

        Frames of the runner (``_bf*``) go; so do the ``<module>`` frames of the
        exec that carried the code, except, when ``keep_module_frame``, the
        innermost one: module-level code of ``running`` that failed.
        """
        lines = text.splitlines()
        if running is not None and (compiled := _compile_error(lines)) is not None:
            at, margin, line_in_chunk = compiled  # the chunk never ran: its line is the only frame
            head = [line for line in lines[:at] if not _FRAME.match(line)]
            lines[: at + 1] = [*head, f'{margin}File "{self.path}", line {running.first + line_in_chunk - 1}']
            return "\n".join(lines) + ("\n" if text.endswith("\n") else "")
        module_frames = [i for i, line in enumerate(lines) if (m := _FRAME.match(line)) and m.group(4) == "<module>"]
        keep = module_frames[-1] if keep_module_frame and module_frames else None
        out = []
        for index, line in enumerate(lines):
            match = _FRAME.match(line)
            if match is None:
                out.append(line)
                continue
            indent, _, number, name = match.groups()
            if name.startswith(_RUNNER_PREFIX) or (name == "<module>" and index != keep):
                continue
            chunk = running if name == "<module>" or (running and name in running.names) else self.owner(name)
            chunk = chunk or running  # a lambda, or a function the running code made: best guess, its own lines
            if chunk is None:
                out.append(line)
                continue
            out.append(f'{indent}File "{self.path}", line {chunk.first + int(number) - 1}, in {name}')
        return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _compile_error(lines: list[str]) -> tuple[int, str, int] | None:
    """Where the board could not compile the source it was sent: (index, indent, line).

    Its frame has no function name and comes first, or after only the ``<module>``
    frames of ``<stdin>`` that ran a staged source with ``exec()``. A SyntaxError
    from the test's own ``exec``/``eval`` of a string follows the test's frames and
    is left as the board printed it. (One case looks the same and is mapped too:
    top-level code that execs a bad string, unstaged, from its part's first lines.)
    """
    for index, line in enumerate(lines):
        match = _COMPILE_FRAME.match(line)
        if match:
            return index, match.group(1), int(match.group(3))
        frame = _FRAME.match(line)
        if frame and (frame.group(2) != "<stdin>" or frame.group(4) != "<module>"):
            return None
    return None


def failed_line(traceback: str, path: str) -> int | None:
    """The innermost frame's line in ``path`` (after :meth:`DeviceSource.traceback`)."""
    found = None
    for match in re.finditer(rf'File "{re.escape(path)}", line (\d+)', traceback):
        found = int(match.group(1))
    return found


def parse(path: str, text: str, *, is_test: Callable[[str], bool] | None = None) -> DeviceSource:
    """Read a device test module; ``is_test(name)`` says which functions are tests
    (default: names starting with ``test``). Raises DeviceSourceError."""
    if is_test is None:
        is_test = _default_is_test
    try:
        rewritten = rewrite(text)
        tree = ast.parse(rewritten.source)
    except SyntaxError as exc:
        raise DeviceSourceError(f"{path}:{exc.lineno}: {exc.msg}") from None
    lines = rewritten.source.splitlines()
    for number in _comment_lines(rewritten.source):
        lines[number - 1] = ""  # sent as an empty line: fewer bytes, same line numbers
    prelude: list[Chunk] = []
    tests: dict[str, Chunk] = {}
    selection: dict[str, Any] = {}
    defines: set[str] = set()
    adjacent = False  # the previous statement went to the prelude too
    for node in tree.body:
        if _assigns(node, SELECTION_NAME):
            selection = _selection(path, node)
            adjacent = False
            continue
        chunk = _chunk(node, lines)
        if isinstance(node, ast.FunctionDef) and is_test(node.name):
            _check_test_function(path, node)
            tests[node.name] = chunk
            adjacent = False
            continue
        if isinstance(node, ast.FunctionDef) and node.name in SETUP_NAMES:
            defines.add(node.name)
        if adjacent and chunk.last - prelude[-1].first < PRELUDE_GROUP_LINES:
            chunk = _merged(prelude.pop(), chunk, lines)  # fewer exchanges; still small enough to compile
        prelude.append(chunk)
        adjacent = True
    return DeviceSource(path, rewritten, tuple(prelude), tests, selection, frozenset(defines))


def _default_is_test(name: str) -> bool:
    return name.startswith("test")


def _assigns(node: ast.stmt, name: str) -> bool:
    return isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)


def _selection(path: str, node: ast.stmt) -> dict[str, Any]:
    """``boardfarm = {...}``: a literal dict with the keys of ``@pytest.mark.board``."""
    where = f"{path}:{node.lineno}: {SELECTION_NAME}"
    assert isinstance(node, ast.Assign)
    try:
        value = ast.literal_eval(node.value)
    except (ValueError, SyntaxError, TypeError):
        raise DeviceSourceError(f"{where} must be a literal dict (it is read on the host, never run)") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise DeviceSourceError(f"{where} must be a dict with string keys, got {type(value).__name__}")
    problems = marker_problems((), value)
    if problems:
        raise DeviceSourceError("\n".join(f"{where}: {p}" for p in problems))
    return value


def _check_test_function(path: str, node: ast.FunctionDef) -> None:
    args = node.args
    if args.args or args.posonlyargs or args.kwonlyargs or args.vararg or args.kwarg:
        raise DeviceSourceError(f"{path}:{node.lineno}: device test {node.name}() must take no arguments")


def _chunk(node: ast.stmt, lines: list[str]) -> Chunk:
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])
    last = node.end_lineno or node.lineno
    body = lines[first - 1 : last]
    names = frozenset(
        n.name for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    )
    return Chunk(first, last, "\n".join(body), names)


def _merged(before: Chunk, after: Chunk, lines: list[str]) -> Chunk:
    return Chunk(before.first, after.last, "\n".join(lines[before.first - 1 : after.last]), before.names | after.names)


def _comment_lines(source: str) -> set[int]:
    """Lines that hold only a comment (a "#" inside a string is no comment)."""
    lines = source.splitlines()
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {t.start[0] for t in tokens if t.type == tokenize.COMMENT and lines[t.start[0] - 1].lstrip().startswith("#")}
