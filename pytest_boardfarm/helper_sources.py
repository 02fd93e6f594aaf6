"""The text of the MicroPython helpers in ``firmware_helpers/``, ready to send to a board.

The helper files are never imported on the host. Installed, they live in the
package ``pytest_boardfarm.firmware_helpers``; in a checkout, at the top of the
repository. Either way they are read as text, so a user's own ``firmware_helpers``
package cannot shadow them.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path

_CONTINUES = ("except", "else", "elif", "finally")
_DEF = re.compile(r"def (\w+)\(")
_CALL = re.compile(r"\b(_bf_\w+)\(")


@cache
def folder() -> Path:
    """Where the helper files are: the installed subpackage, else the checkout's folder."""
    spec = importlib.util.find_spec("pytest_boardfarm.firmware_helpers")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "firmware_helpers"


def path(name: str) -> Path:
    """One helper file's path, refusing names that would leave the helpers' folder."""
    if Path(name).name != name or not name.endswith(".py"):
        raise ValueError(f"not a firmware helper file name: {name!r}")
    return folder() / name


def source(name: str) -> str:
    """One helper file's text without comments and blank lines, one space an indent level.

    Less for a small board to receive and buffer: helpers are sent for every operation.
    """
    text = path(name).read_text(encoding="utf-8")
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
