"""Bytes as Python literals that fit a size budget.

Data goes to a board as ``repr()`` of bytes: pure ASCII, every byte escaped
that needs it, so nothing the user supplies can change the code around it.
"""

from __future__ import annotations


def fitting(data: bytes, start: int, room: int) -> int:
    """End index of the longest ``data[start:end]`` whose repr() fits ``room`` (at least 1 byte)."""
    end = min(len(data), start + max(1, (room - 3) // 4))  # 4 chars per byte always fit
    length = len(repr(data[start:end]))
    while end < len(data):
        extra = len(repr(data[end : end + 1])) - 3
        if length + extra > room:
            break
        length += extra
        end += 1
    # Quote style depends on the whole piece (b'..' vs b".."), so check it exactly.
    while end > start + 1 and len(repr(data[start:end])) > room:
        end -= 1
    return end


def pieces(data: bytes, room: int) -> list[bytes]:
    """``data`` cut into consecutive pieces whose repr() each fits ``room``."""
    out: list[bytes] = []
    start = 0
    while start < len(data):
        end = fitting(data, start, room)
        out.append(data[start:end])
        start = end
    return out
