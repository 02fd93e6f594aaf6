"""Everything a board printed on one connection, in order.

The raw REPL layer appends every byte it reads; the farm's serial logs take
slices of it per test (``mark``/``since``) and may stream it as it arrives.
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


class Transcript:
    def __init__(self) -> None:
        self._chunks = bytearray()
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def append(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            self._chunks += data
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
        """A position to pass to :meth:`since` later."""
        return len(self._chunks)

    def since(self, mark: int = 0) -> bytes:
        return bytes(self._chunks[mark:])

    @property
    def data(self) -> bytes:
        return bytes(self._chunks)

    def text(self, mark: int = 0) -> str:
        """Readable text: decoded, framing bytes dropped, line ends normalised."""
        return readable(self.since(mark))


def readable(data: bytes) -> str:
    """What the board printed, without the protocol's framing."""
    cleaned = _NOISE.sub(b"", data).translate(None, _FRAMING)
    return cleaned.decode("utf-8", "replace").replace("\r\n", "\n")
