"""What a board printed outside any exchange of the raw REPL: kept until a test reads it.

A board prints on its own while it boots (``main.py``), while a program started
in the background runs, or from a timer while it sits at the prompt. The raw
REPL layer puts every such byte here instead of throwing it away, and
``expect`` searches here, consuming up to the end of each match (as
pytest-embedded's ``dut.expect`` does). Positions are absolute byte counts, so
a cut or a trim never moves what a caller remembered. Only the most recent
``limit`` bytes are kept: a board that floods cannot fill the host's memory.
"""

from __future__ import annotations

import re

DEFAULT_LIMIT = 1 << 20


class Console:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._data = bytearray()
        self._base = 0  # absolute position of _data[0]
        self._pos = 0  # absolute position up to which expect has consumed

    @property
    def end(self) -> int:
        """Absolute position just past the last byte received."""
        return self._base + len(self._data)

    def append(self, data: bytes) -> None:
        self._data += data
        if len(self._data) > 2 * self.limit:  # trim in bulk: appending stays cheap in a flood
            cut = len(self._data) - self.limit
            del self._data[:cut]
            self._base += cut
            self._pos = max(self._pos, self._base)

    def pending(self) -> bytes:
        """What no ``expect`` has consumed yet."""
        return bytes(self._data[self._pos - self._base :])

    def tail(self, size: int = 300) -> bytes:
        """The last ``size`` bytes received, consumed or not (for error messages)."""
        return bytes(self._data[-size:])

    def search(self, pattern: re.Pattern[bytes]) -> re.Match[bytes] | None:
        """Match ``pattern`` in the unconsumed bytes; a match consumes up to its end."""
        found = pattern.search(self.pending())
        if found is not None:
            self._pos += found.end()
        return found

    def find_from(self, start: int, pattern: re.Pattern[bytes]) -> tuple[int, re.Match[bytes]] | None:
        """``pattern`` searched from absolute ``start`` (consumed or not), without consuming;
        the match with the absolute position its offsets count from."""
        origin = max(start, self._base)
        found = pattern.search(bytes(self._data), origin - self._base)
        return None if found is None else (self._base, found)

    def between(self, start: int, stop: int) -> bytes:
        """The bytes at absolute [start, stop) still kept."""
        return bytes(self._data[max(start, self._base) - self._base : max(stop, self._base) - self._base])

    def cut(self, start: int, stop: int) -> bytes:
        """Remove absolute [start, stop) (protocol framing found in the stream) and return it."""
        begin, finish = max(start, self._base) - self._base, max(stop, self._base) - self._base
        removed = bytes(self._data[begin:finish])
        del self._data[begin:finish]
        if self._pos > self._base + begin:
            self._pos = max(self._base + begin, self._pos - len(removed))
        return removed

    def consume_all(self) -> None:
        """Mark everything received so far as read (``expect`` then sees only what comes next)."""
        self._pos = self.end
