"""A pseudo-terminal in front of an emulated board's TCP UART.

The emulated micro:bit's UART is a TCP socket, so without this every test
would take the ``socket://`` path. A relay gives the board a real tty device
(``/dev/pts/N``), the path every USB board takes through pyserial, and lets a
test unplug it: ``vanish()`` hangs the tty up (reads and writes on it fail, as
when a USB hub drops the port) and removes the port's stable name;
``come_back()`` makes a new pty and points the stable name at it, as
``/dev/serial/by-id/...`` is re-created when a board re-enumerates.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import tty
from pathlib import Path
from types import TracebackType

_CHUNK = 4096
_WRITE_SECONDS = 1.0  # bytes nobody reads are dropped after this, as a UART drops them


class PtyRelay:
    """Copies bytes between a pty and ``socket://host:port`` in a thread.

    ``path`` is the port to open: ``link`` (a symlink the test owns, re-pointed
    on every come-back) when given, else the current ``/dev/pts/N``.
    """

    def __init__(self, target: str, link: Path | None = None) -> None:
        host, port = target.removeprefix("socket://").rsplit(":", 1)
        self.target = (host, int(port))
        self.link = link
        self.device = ""
        self._fds: list[int] = []
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.come_back()

    @property
    def path(self) -> str:
        return str(self.link) if self.link else self.device

    @property
    def present(self) -> bool:
        return self._thread is not None

    def come_back(self) -> None:
        """Plug the port in: a new pty (a new /dev/pts/N), connected to the board."""
        if self.present:
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or line editing before a client sets the port up
        os.set_blocking(master, False)
        stop_r, stop_w = os.pipe()
        self._fds = [master, slave, stop_r, stop_w]  # the slave stays open: a master with no slave reads EIO
        try:
            self._sock = socket.create_connection(self.target, timeout=5)
        except OSError:
            self._close_fds()
            raise
        self.device = os.ttyname(slave)
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
            self.link.symlink_to(self.device)
        self._thread = threading.Thread(target=self._pump, args=(master, self._sock, stop_r), daemon=True)
        self._thread.start()

    def vanish(self) -> None:
        """Unplug the port: the tty hangs up and its stable name goes away."""
        if self.link:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        os.write(self._fds[3], b"x")
        thread.join(timeout=5)
        assert not thread.is_alive(), "the pty relay thread did not stop"
        if self._sock:
            self._sock.close()
            self._sock = None
        self._close_fds()  # closing the master hangs up every open of the slave

    def close(self) -> None:
        self.vanish()

    def _close_fds(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    @staticmethod
    def _pump(master: int, sock: socket.socket, stop: int) -> None:
        while True:
            ready, _, _ = select.select([master, sock.fileno(), stop], [], [])
            if stop in ready:
                return
            try:
                if master in ready:
                    sock.sendall(os.read(master, _CHUNK))
                if sock.fileno() in ready:
                    data = sock.recv(_CHUNK)
                    if not data:  # the emulator went away
                        return
                    _write_all(master, data)
            except OSError:
                return

    def __enter__(self) -> PtyRelay:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        _, writable, _ = select.select([], [fd], [], _WRITE_SECONDS)
        if not writable:
            return  # nobody reads the port: drop the rest
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue
