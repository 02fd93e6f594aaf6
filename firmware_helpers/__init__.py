"""MicroPython source that pytest-boardfarm runs on the boards.

The files here are not imported on the host: their text is sent to a board's raw
REPL. They must run on MicroPython 1.9 (the micro:bit) and on current firmware.
"""

from __future__ import annotations

from importlib import resources

_CONTINUES = ("except", "else", "elif", "finally")


def source(name: str) -> str:
    """One helper file's text without comment and blank lines (less for a small board to buffer)."""
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    return "\n".join(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


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
