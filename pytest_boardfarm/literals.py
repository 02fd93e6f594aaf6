"""Bytes as Python literals that fit a size budget.

Data goes to a board as ``repr()`` of bytes: pure ASCII, every byte escaped
that needs it, so nothing the user supplies can change the code around it.

MicroPython interns every string or bytes literal of at most 10 bytes while it
parses (``MICROPY_ALLOC_PARSE_INTERN_STRING_LEN``), and interned strings are
never freed: on a micro:bit a few hundred short data literals eat the heap
until the next reset. So a short piece is sent padded, as ``b'___ab'[3:]``.
"""

from __future__ import annotations

INTERNED_UP_TO = 10  # literals this short are interned by the board's parser, for good
_PAD = b"_"


def expression(piece: bytes) -> str:
    """Device expression for ``piece`` whose literal the board's parser will not intern."""
    pad = INTERNED_UP_TO + 1 - len(piece)
    if pad <= 0:
        return repr(piece)
    return f"{_PAD * pad + piece!r}[{pad}:]"


def fitting(data: bytes, start: int, room: int) -> int:
    """End index of the longest ``data[start:end]`` whose :func:`expression` fits ``room`` (at least 1 byte)."""
    end = min(len(data), start + max(1, (room - 3) // 4))  # 4 chars per byte always fit a long piece
    length = len(repr(data[start:end]))
    while end < len(data):
        extra = len(repr(data[end : end + 1])) - 3
        if length + extra > room:
            break
        length += extra
        end += 1
    # Quote style depends on the whole piece (b'..' vs b".."), padding on its length: check
    # exactly. Padding may lengthen a piece cut just below the limit; cutting more shortens it.
    while end > start + 1 and len(expression(data[start:end])) > room:
        end -= 1
    return end


def pieces(data: bytes, room: int) -> list[bytes]:
    """``data`` cut into consecutive pieces whose :func:`expression` each fits ``room``."""
    out: list[bytes] = []
    start = 0
    while start < len(data):
        end = fitting(data, start, room)
        out.append(data[start:end])
        start = end
    return out
