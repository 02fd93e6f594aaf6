"""Bytes in and out of a board, over any pyserial URL.

This layer knows nothing of MicroPython. Each transport offers ``write``, a
``read`` that waits up to a timeout for at least one byte and then returns
everything already available, ``pulse_reset`` and ``close``.

``open_transport(url)`` picks the class by URL scheme, as pyserial picks its
URL handlers: ``socket://`` gets :class:`SocketTransport` (TCP_NODELAY, so an
exchange is not held ~40 ms by Nagle's algorithm, and no 0.3 s sleep on close
as in pyserial's handler); ``rfc2217://`` gets :class:`Rfc2217Transport` (the
same socket with telnet.py's RFC 2217 client on it); every other URL goes to
pyserial (see :class:`SerialTransport` for DTR/RTS and exclusive opening).
Ports with a file descriptor wait in ``select()``; others (``loop://``) fall
back to pyserial's own short read timeout.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import serial

from . import telnet
from .errors import BoardTimeout, ConnectionLost

_POLL_SECONDS = 0.005  # read timeout for ports that cannot be select()ed
_READ_SIZE = 65536


class Transport(Protocol):
    url: str

    def write(self, data: bytes) -> None: ...

    def read(self, timeout: float) -> bytes: ...

    def pulse_reset(self, seconds: float = 0.1) -> None: ...

    def close(self) -> None: ...


class SerialTransport:
    """A pyserial port opened from a URL (``/dev/ttyACM0``, ``rfc2217://h:p``, ...).

    DTR and RTS are held at ``dtr`` / ``rts`` from the moment the port opens.
    Both asserted is the default, as in mpremote: MicroPython's stm32 USB port
    sends nothing while DTR is low, TinyUSB ports drop pending output when it
    falls, and the usual ESP32 auto-reset circuit runs the chip with both
    asserted. A device path is opened with an exclusive ``flock`` (pyserial's
    ``exclusive``), so a second open by anything that locks the port the same
    way (another run, a pyserial program with ``exclusive=True``) fails instead
    of sharing it unnoticed.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        write_timeout: float = 10.0,
        dtr: bool = True,
        rts: bool = True,
    ) -> None:
        self.url = url
        self.dtr, self.rts = dtr, rts
        support = _SCHEMES.get(_scheme(url), _SchemeSupport())
        try:
            self._port = serial.serial_for_url(
                url,
                baudrate=baudrate,
                timeout=0,
                write_timeout=write_timeout if support.write_timeout else None,
                exclusive=True if support.exclusive else None,
                do_not_open=True,
            )
            self._port.dtr = dtr  # pyserial sets the lines as it opens the port
            self._port.rts = rts
            self._port.open()
        except (serial.SerialException, ValueError, OSError) as exc:
            raise ConnectionLost(f"cannot open {url}: {exc}{support.hint(str(exc))}") from exc
        self._fd = _fileno(self._port)
        if self._fd is None:
            self._port.timeout = _POLL_SECONDS

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except serial.SerialTimeoutException as exc:
            raise BoardTimeout(f"{self.url}: the board stopped accepting data") from exc
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.url}: write failed: {exc}") from exc

    def read(self, timeout: float) -> bytes:
        """Wait up to ``timeout`` seconds for data; return all that is available."""
        try:
            if self._fd is not None:
                ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout))
                if not ready:
                    return b""
                data = self._port.read(_READ_SIZE)
                if not data:  # readable but empty: the other end closed
                    raise ConnectionLost(f"{self.url}: port closed by the other end")
                return bytes(data)
            end = time.monotonic() + timeout
            while True:
                data = self._port.read(max(1, self._port.in_waiting))
                if data or time.monotonic() >= end:
                    return bytes(data)
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.url}: read failed: {exc}") from exc

    def pulse_reset(self, seconds: float = 0.1) -> None:
        """Hard-reset a board wired the usual way (RTS to EN/RESET, DTR to BOOT).

        RTS alone asserted holds the chip in reset; releasing it with DTR low
        boots normally. The lines go back to their idle state only after
        ``seconds`` more, once the boot pins have been sampled.
        """
        try:
            self._port.dtr = False
            self._port.rts = True
            time.sleep(seconds)
            self._port.rts = False
            time.sleep(seconds)
            self._port.dtr = self.dtr  # DTR first: RTS alone asserted would reset again
            self._port.rts = self.rts
        except (serial.SerialException, OSError) as exc:
            raise ConnectionLost(f"{self.url}: cannot set DTR/RTS: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(serial.SerialException, OSError):
            self._port.close()


@dataclass(frozen=True)
class _SchemeSupport:
    """What a pyserial URL handler accepts beyond the basics."""

    exclusive: bool = False  # flock() on open: device paths only
    write_timeout: bool = True  # rfc2217:// raises NotImplementedError for one
    hints: tuple[tuple[str, str], ...] = ()  # (words in pyserial's error, what to do about it)

    def hint(self, error: str) -> str:
        return "".join(f" ({advice})" for words, advice in self.hints if words in error)


_SCHEMES = {
    "": _SchemeSupport(exclusive=True),  # a device path: /dev/ttyACM0
    "spy": _SchemeSupport(exclusive=True),  # a device path, logged
    "hwgrep": _SchemeSupport(exclusive=True),  # a device found by pattern
    "rfc2217": _SchemeSupport(  # its socket's own timeout bounds writes
        write_timeout=False,
        hints=(
            (
                "option 'control'",
                "the server did not confirm setting DTR/RTS; one that cannot, such as ser2net on a pty,"
                " needs '?ign_set_control' at the end of the URL",
            ),
        ),
    ),
}


def _scheme(url: str) -> str:
    return urlsplit(url).scheme if "://" in url else ""


def _fileno(port: serial.SerialBase) -> int | None:
    try:
        fd = port.fileno()
    except (AttributeError, NotImplementedError, serial.SerialException, OSError):
        return None
    return fd if isinstance(fd, int) else None


class SocketTransport:
    """A raw TCP byte stream: ``socket://host:port`` (ser2net, QEMU, ESP-Link)."""

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        write_timeout: float = 10.0,
        dtr: bool = True,
        rts: bool = True,
    ) -> None:
        self.url = url  # baudrate, dtr and rts belong to whatever serves the socket
        parts = urlsplit(url)
        try:
            host, port = parts.hostname, parts.port
        except ValueError:  # a port out of range
            host, port = None, None
        if not host or not port:
            raise ConnectionLost(f"cannot open {self.url}: expected {parts.scheme}://host:port")
        try:
            self._sock = socket.create_connection((host, port), timeout=write_timeout)
        except OSError as exc:
            raise ConnectionLost(f"cannot open {url}: {exc}") from exc
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.settimeout(write_timeout)  # bounds sendall() against a board that stopped reading

    def write(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except TimeoutError as exc:
            raise BoardTimeout(f"{self.url}: the board stopped accepting data") from exc
        except OSError as exc:
            raise ConnectionLost(f"{self.url}: write failed: {exc}") from exc

    def read(self, timeout: float) -> bytes:
        try:
            ready, _, _ = select.select([self._sock], [], [], max(0.0, timeout))
            if not ready:
                return b""
            data = self._sock.recv(_READ_SIZE)
        except OSError as exc:
            raise ConnectionLost(f"{self.url}: read failed: {exc}") from exc
        if not data:
            raise ConnectionLost(f"{self.url}: connection closed by the other end")
        return data

    def pulse_reset(self, seconds: float = 0.1) -> None:
        raise ConnectionLost(f"{self.url}: a TCP port has no DTR/RTS lines to pulse")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


class Rfc2217Transport(SocketTransport):
    """Serial over telnet: ``rfc2217://host:port`` (ser2net, labgrid's exporters).

    The telnet layer is :mod:`.telnet`'s own small client, not pyserial's: it
    opens without waiting for the server to confirm anything (pyserial's takes
    ~0.5 s, and times out setting DTR/RTS on a server that cannot), and a
    write is bounded by the socket's timeout like ``socket://``. A query
    (``?ign_set_control``, pyserial's option) is accepted and has nothing to do.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        write_timeout: float = 10.0,
        dtr: bool = True,
        rts: bool = True,
    ) -> None:
        super().__init__(url.split("?", 1)[0], write_timeout=write_timeout)
        self.url = url
        self.dtr, self.rts = dtr, rts
        self._decoder = telnet.TelnetDecoder()
        for verb, option in telnet.OPENING_OPTIONS:
            self._decoder.sent(verb, option)
        self._send(telnet.opening(baudrate, dtr=dtr, rts=rts))

    def write(self, data: bytes) -> None:
        self._send(telnet.escape(data))

    def _send(self, wire: bytes) -> None:
        super().write(wire)

    def read(self, timeout: float) -> bytes:
        """Data only: telnet commands are answered (if they need it) and dropped."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            data = self._decoder.feed(super().read(max(0.0, deadline - time.monotonic())))
            if self._decoder.replies:
                replies, self._decoder.replies = bytes(self._decoder.replies), bytearray()
                self._send(replies)
            if data or time.monotonic() >= deadline:
                return data

    def hint(self) -> str:
        """Why the board may not answer: a server that never negotiated is not RFC 2217."""
        if self._decoder.heard:
            return ""
        raw = "socket://" + self.url.split("://", 1)[1].split("?", 1)[0]
        return (
            f"; the server at {self.url} never negotiated telnet, as an RFC 2217 server does at once:"
            f" if it is a raw TCP port (ser2net's 'tcp' accepter, labgrid's 'protocol: raw'), use {raw}"
        )

    def pulse_reset(self, seconds: float = 0.1) -> None:
        """RTS alone asserted, then released with DTR low (see SerialTransport.pulse_reset),
        as COM-PORT-OPTION requests; the server's confirmations are not waited for."""
        self._send(telnet.control(dtr=False, rts=True))
        time.sleep(seconds)
        self._send(telnet.control(rts=False))
        time.sleep(seconds)
        self._send(telnet.control(dtr=self.dtr, rts=self.rts))


_BY_SCHEME: dict[str, type[SocketTransport] | type[SerialTransport]] = {
    "socket": SocketTransport,
    "rfc2217": Rfc2217Transport,
}


def open_transport(
    url: str, *, baudrate: int = 115200, write_timeout: float = 10.0, dtr: bool = True, rts: bool = True
) -> Transport:
    """Open the right transport for ``url`` (see the module docstring)."""
    cls = _BY_SCHEME.get(_scheme(url), SerialTransport)
    return cls(url, baudrate=baudrate, write_timeout=write_timeout, dtr=dtr, rts=rts)
