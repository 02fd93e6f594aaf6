"""What a board printed on one connection, in order: the most recent ``limit`` bytes.

The raw REPL layer appends every byte it reads; the farm's serial logs take
slices of it per test (``mark``/``since``) and may stream it as it arrives.
A board (or a TCP peer) that floods output must not fill the host's memory,
so only the tail is kept; marks are absolute byte counts, so a slice whose
start has been dropped says how much is missing.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

Listener = Callable[[bytes], None]

# Raw REPL framing that means nothing to a person reading a log: the banner,
# the prompt after each reply, the OK that starts one, and the separators.
_NOISE = re.compile(rb"raw REPL; CTRL-B to exit\r\n>|\x04>|(?<=>)OK|\AOK|R\x00|R\x01..\x01", re.DOTALL)
_FRAMING = b"\x01\x04"


DEFAULT_LIMIT = 4 << 20  # bytes kept per connection; a test's serial log rarely needs more


class Transcript:
    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit  # at least this many recent bytes are kept, at most twice as many
        self._kept = bytearray()
        self._dropped = 0  # bytes dropped from the front: the absolute position of _kept[0]
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def append(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            self._kept += data
            if len(self._kept) > 2 * self.limit:  # trim in bulk: appending stays cheap in a flood
                cut = len(self._kept) - self.limit
                del self._kept[:cut]
                self._dropped += cut
            listeners = list(self._listeners)
        for listener in listeners:
            listener(data)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with each new chunk; returns a function that stops it."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def mark(self) -> int:
        """A position to pass to :meth:`since` later: bytes received so far."""
        with self._lock:
            return self._dropped + len(self._kept)

    def since(self, mark: int = 0) -> bytes:
        """The bytes received after ``mark`` that are still kept (see :meth:`dropped_since`)."""
        with self._lock:
            return bytes(self._kept[max(0, mark - self._dropped) :])

    def dropped_since(self, mark: int = 0) -> int:
        """How many bytes received after ``mark`` are no longer kept."""
        with self._lock:
            return max(0, self._dropped - mark)

    @property
    def data(self) -> bytes:
        """Every byte still kept."""
        with self._lock:
            return bytes(self._kept)

    def text(self, mark: int = 0) -> str:
        """Readable text: decoded, framing bytes dropped, line ends normalised.

        When the start of the slice has been dropped, it begins with a line saying how much.
        """
        with self._lock:
            dropped = max(0, self._dropped - mark)
            kept = bytes(self._kept[max(0, mark - self._dropped) :])
        head = f"[... {dropped} bytes dropped ...]\n" if dropped else ""
        return head + readable(kept)


def readable(data: bytes) -> str:
    """What the board printed, without the protocol's framing."""
    cleaned = _NOISE.sub(b"", data).translate(None, _FRAMING)
    return cleaned.decode("utf-8", "replace").replace("\r\n", "\n")
