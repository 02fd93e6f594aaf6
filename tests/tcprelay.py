"""A TCP relay in front of an emulated board's UART, for faults a real line has.

It can greet each client with bytes first (line noise before the banner) and
change what flows to the board (a port whose Ctrl-C never arrives).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable

Change = Callable[[bytes], bytes]


def _unchanged(data: bytes) -> bytes:
    return data


class TcpRelay:
    def __init__(self, target: str, *, greeting: bytes = b"", to_board: Change = _unchanged) -> None:
        host, port = target.removeprefix("socket://").split(":")
        self.target = (host, int(port))
        self.greeting = greeting
        self.to_board = to_board
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            if self.greeting:
                client.sendall(self.greeting)
            threading.Thread(target=self._pipe, args=(client, upstream, self.to_board), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, _unchanged), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, change: Change) -> None:
        try:
            while data := src.recv(4096):
                dst.sendall(change(data))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()
