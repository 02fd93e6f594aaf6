"""The link floor: a client on a bare socket that does only the raw REPL exchange itself.

What an exec costs the link and the board, with no client around it: the benches
set pytest-boardfarm (and mpremote) against it on the same board in the same run.
"""

from __future__ import annotations

import socket
import struct
from urllib.parse import urlsplit

RECV_SECONDS = 10.0  # the longest any one reply may keep the bench waiting


class Minimal:
    """A client that does only the exchange itself: what the link and the board cost."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=RECV_SECONDS)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.sock.sendall(b"\r\x03\x03\x01")
        self.until(b"raw REPL; CTRL-B to exit\r\n>")

    def _receive(self) -> None:
        data = self.sock.recv(4096)  # TimeoutError after RECV_SECONDS: a board that went silent
        if not data:
            raise ConnectionError("the board closed the connection")
        self.buf += data

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._receive()
        head, _, self.buf = self.buf.partition(marker)
        return head

    def take(self, count: int) -> bytes:
        while len(self.buf) < count:
            self._receive()
        head, self.buf = self.buf[:count], self.buf[count:]
        return head

    def plain(self, source: bytes) -> None:
        self.sock.sendall(source + b"\x04")
        reply = self.until(b"\x04>")
        assert reply.startswith(b"OK") and reply.endswith(b"\x04"), reply

    def paste(self, source: bytes) -> None:
        self.sock.sendall(b"\x05A\x01")
        assert self.take(2) == b"R\x01"
        window = struct.unpack("<H", self.take(2))[0]
        allowed, sent = 0, 0
        while sent < len(source):
            while allowed == 0 or self.buf:
                flag = self.take(1)
                assert flag == b"\x01", flag  # a window (an abort would be \x04)
                allowed += window
            piece = source[sent : sent + allowed]
            self.sock.sendall(piece)
            sent += len(piece)
            allowed -= len(piece)
        self.sock.sendall(b"\x04")
        reply = self.until(b"\x04>")
        assert reply.lstrip(b"\x01").startswith(b"\x04") and reply.endswith(b"\x04"), reply

    def close(self) -> None:
        self.sock.close()
