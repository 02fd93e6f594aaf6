"""MicroPython source that pytest-boardfarm runs on the boards.

The files here are not imported on the host: their text is sent to a board's raw
REPL. They must run on MicroPython 1.9 (the micro:bit) and on current firmware.
"""

from __future__ import annotations

import re
from importlib import resources

_CONTINUES = ("except", "else", "elif", "finally")
_DEF = re.compile(r"def (\w+)\(")
_CALL = re.compile(r"\b(_bf_\w+)\(")


def source(name: str) -> str:
    """One helper file's text without comments and blank lines, one space an indent level.

    Less for a small board to receive and buffer: helpers are sent for every operation.
    """
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    lines = (line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    return "\n".join(_narrow(line) for line in lines)


def _narrow(line: str) -> str:
    body = line.lstrip(" ")
    indent = len(line) - len(body)
    return " " * (indent // 4) + body if indent % 4 == 0 else line


def blocks(name: str) -> list[str]:
    """The helper file split into top-level statements, to be run one at a time.

    A board with a few KB of fragmented heap may not compile the whole file at
    once; one function at a time it can.
    """
    out: list[list[str]] = []
    for line in source(name).splitlines():
        if out and (line[:1].isspace() or line.startswith(_CONTINUES)):
            out[-1].append(line)
        else:
            out.append([line])
    return ["\n".join(block) for block in out]


def functions(name: str) -> dict[str, str]:
    """The helper file's functions, by name, each one's source a block of its own."""
    found = {}
    for block in blocks(name):
        match = _DEF.match(block)
        if match:
            found[match.group(1)] = block
    return found


def needed(name: str, *wanted: str) -> dict[str, str]:
    """The functions ``wanted`` and every helper they call, by name, with their sources."""
    available = functions(name)
    out: dict[str, str] = {}
    todo = list(wanted)
    while todo:
        function = todo.pop()
        if function in out:
            continue
        out[function] = available[function]  # KeyError: no such helper, a bug on the host side
        todo += [called for called in _CALL.findall(out[function]) if called != function]
    return out
