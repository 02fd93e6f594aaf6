"""A scripted raw-REPL device for unit tests of protocol logic.

It is not a board and proves nothing about real firmware (the emulator tests
do that); it lets the tests reach paths the micro:bit cannot, such as raw-paste
flow control on current firmware.
"""

from __future__ import annotations

import contextlib
import io
import struct

BANNER = b"raw REPL; CTRL-B to exit\r\n>"


class FakeDevice:
    """Implements the transport interface; answers like a MicroPython raw REPL.

    ``paste`` is "yes" (raw-paste with a window of ``window`` bytes), "refuse"
    (answers R\\x00 then >), "old" (restarts the raw REPL, like 1.9.2) or
    "silent" (no answer at all; the request's bytes stay in its line buffer).
    ``exit_reboots``: a program ending in SystemExit soft-reboots the board, as
    current firmware does in the raw REPL (the micro:bit's 1.9.2 just returns).
    ``soft_reboots=False``: Ctrl-D at an empty raw prompt answers ``OK\\r\\n``
    and nothing else (MicroPython's WebAssembly port, without a host to reboot it).
    """

    url = "fake://device"

    def __init__(
        self,
        paste: str = "yes",
        window: int = 32,
        parse_failures: int = 0,
        exit_reboots: bool = False,
        soft_reboots: bool = True,
    ) -> None:
        self.paste = paste
        self.soft_reboots = soft_reboots
        self.exit_reboots = exit_reboots
        self.parse_failures = parse_failures  # answer this many execs with a parser MemoryError
        self.window = window
        self.out = bytearray()
        self.written = bytearray()
        self.max_unacked = 0  # most bytes received beyond the granted window
        self._source = bytearray()
        self._mode = "friendly"
        self._pending = b""
        self._granted = 0
        self._received = 0
        self.namespace: dict[str, object] = {}

    # transport interface
    def write(self, data: bytes) -> None:
        self.written += data
        for byte in data:
            self._byte(bytes([byte]))

    def read(self, timeout: float) -> bytes:
        data, self.out = bytes(self.out), bytearray()
        return data

    def pulse_reset(self, seconds: float = 0.1) -> None:
        pass

    def close(self) -> None:
        pass

    # device behaviour
    def _byte(self, b: bytes) -> None:
        if self._mode == "paste":
            if b == b"\x04":
                self.out += b"\x04"
                self._run()
                return
            self._source += b
            self._received += 1
            self.max_unacked = max(self.max_unacked, self._received - self._granted)
            if self._received % self.window == 0 and self._received == self._granted:
                self._granted += self.window
                self.out += b"\x01"
            return
        if self._pending:
            self._pending += b
            if len(self._pending) == 3:
                self._paste_request()
            return
        if b == b"\x01":
            self._mode = "raw"
            self._source.clear()
            self.out += BANNER
        elif b == b"\x03":
            self._source.clear()
            if self._mode == "friendly":
                self.out += b"\r\n>>> "
        elif b == b"\x05" and self._mode == "raw":
            self._pending = b
        elif b == b"\x04" and self._mode == "raw":
            if self._source:
                self.out += b"OK"
                self._run()
            elif not self.soft_reboots:
                self.out += b"OK\r\n"
            else:
                self.namespace.clear()
                self.out += b"OK\r\nMPY: soft reboot\r\n" + BANNER
        elif self._mode == "raw":
            self._source += b

    def _paste_request(self) -> None:
        self._pending = b""
        if self.paste == "yes":
            self._mode = "paste"
            self._received = 0
            self._granted = self.window
            self.out += b"R\x01" + struct.pack("<H", self.window) + b"\x01"
        elif self.paste == "refuse":
            self.out += b"R\x00>"
        elif self.paste == "silent":
            self._source += b"\x05A"
        else:
            self.out += BANNER

    def _run(self) -> None:
        source, self._source = bytes(self._source), bytearray()
        self._mode = "raw"
        stdout = io.StringIO()
        err = b""
        if self.parse_failures and b"gc.collect" not in source:
            self.parse_failures -= 1
            self.out += b'\x04Traceback (most recent call last):\r\n  File "<stdin>", line 1\r\n'
            self.out += b"MemoryError: parser could not allocate enough memory\r\n\x04>"
            return
        with contextlib.redirect_stdout(stdout):
            try:
                exec(source.decode().replace("import gc\ngc.collect()", "pass"), self.namespace)
            except SystemExit:
                if self.exit_reboots:  # pyexec: EOF, EOF, then a soft reset back into the raw REPL
                    self.namespace.clear()
                    self.out += stdout.getvalue().replace("\n", "\r\n").encode() + b"\x04\x04"
                    self.out += b"MPY: soft reboot\r\n" + BANNER
                    return
            except Exception as exc:
                err = f"Traceback (most recent call last):\r\n{type(exc).__name__}: {exc}\r\n".encode()
        self.out += stdout.getvalue().replace("\n", "\r\n").encode() + b"\x04" + err + b"\x04>"
