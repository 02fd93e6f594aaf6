"""MicroPython's raw REPL protocol, over any transport.

This layer turns "run these bytes of source" into the Ctrl-A / Ctrl-D exchange
and back into (stdout, stderr). It uses raw-paste mode (firmware 1.14+) with its
flow control where the board supports it, plain raw mode elsewhere and for short
sources, and it records every byte it reads into a :class:`Transcript`.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from . import literals
from .console import Console
from .deadline import Deadline
from .errors import BoardError, BoardRebooted, BoardTimeout, ProtocolError, Stopped
from .transcript import Transcript, readable

BANNER = b"raw REPL; CTRL-B to exit\r\n>"
SOFT_REBOOT = b"soft reboot\r\n"
CTRL_A, CTRL_B, CTRL_C, CTRL_D = b"\x01", b"\x02", b"\x03", b"\x04"
RAW_PASTE_REQUEST = b"\x05A\x01"
REPL_CONTROL = re.compile(rb"[\x01-\x04]")  # what the raw REPL acts on in a source (Ctrl-A to Ctrl-D)
# Every MicroPython prints this when it boots to the friendly REPL; seen while a
# program runs in the raw REPL, it means the board rebooted under it.
REBOOTED = b'Type "help()" for more information.\r\n>>> '
PARSER_OUT_OF_MEMORY = b"MemoryError: parser could not allocate enough memory"
# Runs a staged source and frees it, whatever happens: nothing stays on the board's heap.
STAGED_RUN = b"try:exec(_bf_s)\nfinally:del _bf_s"

# How long a raw-paste request may go unanswered before plain raw mode is used.
# Boards answer in milliseconds; asked once per connection.
RAW_PASTE_ANSWER_SECONDS = 1.0
ENTER_ATTEMPT_SECONDS = 1.5  # one try of Ctrl-C, Ctrl-A; tries repeat until the caller's deadline
QUIET_SECONDS = 0.02  # "the board has stopped talking" while draining at entry
DRAIN_LIMIT_SECONDS = 0.3
# After a deadline passed, how long Ctrl-C may take to bring back the prompt. A
# board that can be interrupted answers in milliseconds; one that cannot (some
# ports ignore Ctrl-C) is handed to the recovery ladder instead of waiting on.
INTERRUPT_SECONDS = 2.0
# A board (or a TCP peer) that floods output must not fill the host's memory: one
# reply may hold this much before the wait is cut short; errors keep a tail.
PENDING_LIMIT = 16 << 20
ERROR_TAIL = 64 << 10
# A program's reply is its output, 0x04, its error output, 0x04, the prompt '>'. The error output
# is empty or MicroPython's traceback, whose last line ends with a newline: so the reply ends at
# the first 0x04 '>' after a 0x04 or a newline, even where the program printed 0x04 itself or its
# exception's message holds one.
REPLY_END = re.compile(rb"(?:\x04|\n)\x04>")
TRACEBACK = b"Traceback (most recent call last):"
# 0x04 and a traceback as MicroPython prints one: its first line, "  File ..." lines, the exception's name.
TRACEBACK_SHAPE = re.compile(rb"\x04" + re.escape(TRACEBACK) + rb"\r?\n(?:  File [^\r\n]*\r?\n)*[A-Za-z_]\w*: ")
# The error output starts with the traceback's first line, or (an exception that got no
# traceback: the heap was full) with the exception's name and ': '.
ERROR_START = re.compile(re.escape(TRACEBACK) + rb"|[A-Za-z_]\w*: ")


def split_reply(body: bytes) -> tuple[bytes, bytes]:
    """A program's reply without its last 0x04 and prompt: (output, error output). The error
    output is empty (the body ends with the 0x04 after the output) or starts with the traceback."""
    if body.endswith(CTRL_D):
        return body[:-1], b""
    # The first traceback line that starts a traceback's shape: output may print that line
    # before it, and the exception's message may hold it after.
    at = next((m.start() for m in TRACEBACK_SHAPE.finditer(body)), body.rfind(CTRL_D + TRACEBACK))
    if at < 0:  # an error without a traceback line: it cannot hold 0x04 as well
        at = body.rfind(CTRL_D)
    return body[:at], body[at + 1 :]


def ends_whole_reply(reply: bytes) -> bool:
    """``reply`` ends with the 0x04 '>' that ends a program's whole reply."""
    return REPLY_END.search(reply, max(0, len(reply) - 3)) is not None and is_whole_reply(reply[:-2])


def is_whole_reply(body: bytes) -> bool:
    """``body`` (a reply up to its last 0x04 '>', without them) is a program's whole reply:
    its output's 0x04, then nothing or an error as MicroPython prints one. Output holding
    0x04 then a newline or 0x04 before a 0x04 '>' does not end the reply."""
    if CTRL_D not in body:
        return False
    if body.endswith(CTRL_D):
        return True
    return ERROR_START.match(split_reply(body)[1]) is not None


STOP_POLL_SECONDS = 0.1  # how soon a wait sees that its command was stopped (RawRepl.stopping)
NUDGE_SECONDS = 0.5  # how long a Ctrl-C may go unanswered before the program's input is nudged
# Sources up to this long (and within the pacing window) go in plain raw mode even where
# raw-paste is supported: one exchange instead of two. Longer ones keep raw-paste's flow
# control, and its compiling as bytes arrive (plain raw mode holds the source in RAM).
SHORT_SOURCE = 256
STRAY_READS = 64  # bounds collecting stray output before an exchange, against a board that floods


class State:
    """Where the board is, as far as this connection knows (see ``RawRepl.state``)."""

    IDLE = "idle"  # at an idle raw REPL prompt
    RUNNING = "running"  # running a program started with ``start``: its output goes to the console
    UNKNOWN = "unknown"  # rebooted, reset, written to, or not stopped: enter the raw REPL before the next exchange


class Transport(Protocol):
    """What this layer needs from the byte layer (see ``transport.py``)."""

    def write(self, data: bytes) -> None: ...

    def read(self, timeout: float) -> bytes: ...


@dataclass(frozen=True)
class Pacing:
    """How much source plain raw mode may send before the board acknowledges.

    Plain raw mode has no flow control, and a real UART's receive buffer can be
    tiny (a 64-byte ring on the micro:bit, 63 usable): bytes that arrive while
    the firmware is busy for a moment are dropped. A source that fits in
    ``window`` is sent at once; a longer one is staged on the board in pieces
    that each fit, every piece acknowledged before the next, then run with
    ``exec()``. Raw-paste mode has real flow control and ignores this.
    """

    window: int = 48

    @classmethod
    def unlimited(cls) -> Pacing:
        """For links with hardware flow control (USB CDC on old firmware)."""
        return cls(window=1 << 30)


@dataclass(frozen=True)
class ExecResult:
    stdout: bytes
    stderr: bytes


def transport_hint(transport: Transport) -> str:
    """What the connection itself suggests about a board that does not answer (or "")."""
    hint = getattr(transport, "hint", None)
    return str(hint()) if callable(hint) else ""


class RawRepl:
    def __init__(
        self,
        transport: Transport,
        transcript: Transcript | None = None,
        *,
        pacing: Pacing | None = None,
        label: str = "board",
    ) -> None:
        self._transport = transport
        self.transcript = transcript if transcript is not None else Transcript()
        self.pacing = pacing or Pacing()
        self.label = label
        self.raw_paste: bool | None = None  # settled by enter(), remembered for the connection
        # True from a failed interrupt until the next successful enter(): the board
        # ignored Ctrl-C, so asking again in this incident only wastes time.
        self.interrupt_failed = False
        self._buf = bytearray()
        # Output the board printed outside any exchange (boot, a background program): read by expect.
        self.console = Console()
        # IDLE until something makes it otherwise (start, a reset, write): a caller that
        # attached without entering gets to the prompt itself (enter, or the recovery ladder).
        self.state = State.IDLE
        self._program_from = 0  # console position where the background program's output begins
        # Set from another thread to end this connection's waits (a command stopped by Ctrl-C).
        self.stopping: threading.Event | None = None

    # -- reading -----------------------------------------------------------------

    def _fill(self, timeout: float) -> bool:
        data = self._transport.read(timeout) if self.stopping is None else self._read_unless_stopped(timeout)
        if data:
            self.transcript.append(data)
            self._buf += data
        return bool(data)

    def _read_unless_stopped(self, timeout: float) -> bytes:
        """A read that ends within STOP_POLL_SECONDS of ``stopping`` being set, with Stopped.

        Ctrl-C is sent on the way out: what the board runs is not left running."""
        assert self.stopping is not None
        end = time.monotonic() + timeout
        while True:
            if self.stopping.is_set():
                self.state = State.UNKNOWN
                with contextlib.suppress(BoardError):
                    self._transport.write(CTRL_C + CTRL_C)
                raise Stopped(f"{self.label}: stopped")
            data = self._transport.read(min(STOP_POLL_SECONDS, max(0.0, end - time.monotonic())))
            if data or time.monotonic() >= end:
                return data

    def _read_until(self, marker: bytes, deadline: Deadline, what: str, *, running: bool = False) -> bytes:
        """Consume and return the buffer up to and including ``marker``.

        ``running``: a program is running, so a boot banner means it rebooted.
        """
        searched = 0
        while True:
            if running and self._buf.endswith(REBOOTED):
                output = bytes(self._buf)
                self._buf.clear()
                raise BoardRebooted(f"{self.label}: the board rebooted while running code", output)
            index = self._buf.find(marker, searched)
            if index >= 0:
                end = index + len(marker)
                out = bytes(self._buf[:end])
                del self._buf[:end]
                return out
            searched = max(0, len(self._buf) - len(marker) + 1)
            if len(self._buf) > PENDING_LIMIT:
                raise BoardTimeout(
                    f"{self.label}: gave up waiting for {what}: the board printed over {PENDING_LIMIT} bytes; "
                    f"the last were: {_tail(self._buf)!r}",
                    _tail(self._buf, ERROR_TAIL),
                )
            if deadline.expired():
                raise BoardTimeout(
                    f"{self.label}: timed out after {deadline.seconds:g}s waiting for {what}; "
                    f"the board printed: {_tail(self._buf)!r}",
                    bytes(self._buf),
                )
            self._fill(deadline.remaining())

    def _read_exact(self, count: int, deadline: Deadline, what: str) -> bytes:
        while len(self._buf) < count:
            if not self._fill(deadline.remaining()) and deadline.expired():
                raise BoardTimeout(f"{self.label}: timed out waiting for {what}; got {bytes(self._buf)!r}")
        out = bytes(self._buf[:count])
        del self._buf[:count]
        return out

    def _drain(self, deadline: Deadline) -> None:
        """Discard what the board sends until it is quiet (bounded)."""
        limit = deadline.sooner(DRAIN_LIMIT_SECONDS)
        while self._fill(min(QUIET_SECONDS, limit.remaining())) and not limit.expired():
            self._to_console()  # kept for expect (the console keeps only a bounded tail)
        self._to_console()

    # -- entering ----------------------------------------------------------------

    def enter(self, deadline: Deadline) -> None:
        """Get to an idle raw REPL prompt from any state, or raise at the caller's deadline.

        Each try is bounded (a Ctrl-C can land while a board boots), and tries
        repeat until ``deadline``: a loaded host or a slow boot needs only time.
        """
        seen = bytearray()
        tries = 0
        prompt_seen = False
        while tries == 0 or not deadline.expired():
            tries += 1
            attempt = deadline.sooner(ENTER_ATTEMPT_SECONDS)
            self._transport.write(b"\r" + CTRL_C)
            self._drain(attempt)
            self._transport.write(CTRL_C)  # a second one for code that caught the first
            self._drain(attempt)
            self._transport.write(b"\r" + CTRL_A)
            try:
                self._read_until(BANNER, attempt, "the raw REPL banner")
                prompt_seen = True  # it listens; what fails after this (e.g. a full heap) is not Ctrl-C's fault
                self._sync(attempt)
                if self.raw_paste is None:  # settle it now: long sources are staged without it
                    self._exec_once(b"pass", attempt)
                self.interrupt_failed = False
                self.state = State.IDLE
                return
            except BoardTimeout as exc:
                seen += exc.output
                del seen[:-ERROR_TAIL]
        self.interrupt_failed = not prompt_seen
        raise BoardTimeout(
            f"{self.label}: could not enter the raw REPL within {deadline.seconds:g}s "
            f"({tries} {'try' if tries == 1 else 'tries'}); "
            f"the board printed: {readable(bytes(seen[-300:]))!r}{transport_hint(self._transport)}",
            bytes(seen),
        )

    def _sync(self, deadline: Deadline) -> None:
        """Prove the prompt is live and nothing stale is queued: echo a fresh token."""
        token = f"bf{os.urandom(4).hex()}"
        self._send_plain(f"print('{token}')".encode())
        self._read_until(b"OK", deadline, "OK")
        reply = self._read_until(b"\x04>", deadline, "the sync reply")
        if not reply.startswith(token.encode()):
            raise BoardTimeout(f"{self.label}: unexpected sync reply {reply!r}", reply)

    # -- running code ------------------------------------------------------------

    def exec(self, source: bytes, deadline: Deadline) -> ExecResult:
        """Run ``source``; on a deadline, interrupt the board and leave it usable."""
        self._collect_stray()
        try:
            result = self._exec_parsed(self._sendable(source, deadline), deadline)
        except BoardTimeout as exc:
            if not self._interrupted():
                raise BoardTimeout(f"{exc} (Ctrl-C did not bring the board back)", exc.output) from None
            raise BoardTimeout(f"{exc} (the board was interrupted and is usable again)", exc.output) from None
        except BoardRebooted as exc:
            if not exc.at_prompt:
                self.recover()
            message = f"{exc}; it printed: {readable(exc.output[-300:])!r}"
            raise BoardRebooted(message, exc.output, at_prompt=True) from None
        self.interrupt_failed = False  # it answered: whatever ignored Ctrl-C has ended
        return result

    def _interrupted(self) -> bool:
        """After a deadline: did Ctrl-C bring back the prompt? (Not tried twice in one incident.)"""
        if self.interrupt_failed:
            return False
        try:
            self.recover()
        except BoardTimeout:
            return False
        return True

    def _sendable(self, source: bytes, deadline: Deadline) -> bytes:
        """What to send for ``source``: itself, or, where the raw REPL cannot take it as it
        is, the program that runs it once it is staged on the board in string literals.

        Plain raw mode cannot take a source longer than its window in one piece. And no
        mode takes the bytes the raw REPL acts on (Ctrl-A to Ctrl-D: restart, leave,
        interrupt, end) as source: a program that holds one in a string, say, would be
        cut short or would interrupt itself. Staged, they travel escaped.
        """
        if not source:
            return b"\n"  # Ctrl-D on an empty raw REPL line is a soft reboot, not an empty program
        if (self.raw_paste is False and len(source) + 1 > self.pacing.window) or REPL_CONTROL.search(source):
            self._stage(source, deadline)
            return STAGED_RUN
        return source

    def _stage(self, source: bytes, deadline: Deadline) -> None:
        """Collect a long source on the board in pieces that each fit the window."""
        # exec() wants bytes; the bytearray is garbage before the source compiles.
        for piece in [*_stage_pieces(source, self.pacing.window - 1), b"_bf_s=bytes(_bf_s)"]:
            result = self._exec_parsed(piece, deadline)
            if result.stdout or result.stderr:
                raise ProtocolError(f"{self.label}: staging a long source failed: {result.stderr!r}")

    def _exec_parsed(self, source: bytes, deadline: Deadline) -> ExecResult:
        """One exec; retried once after a collection if the board could not even parse it.

        A parser out of memory means nothing ran, so sending it again is safe; on a
        small, fragmented heap it usually works after ``gc.collect()``.
        """
        result = self._exec_once(source, deadline)
        if PARSER_OUT_OF_MEMORY in result.stderr:
            self._exec_once(b"import gc\ngc.collect()", deadline)
            result = self._exec_once(source, deadline)
        return result

    def _exec_once(self, source: bytes, deadline: Deadline) -> ExecResult:
        self._send_source(source, deadline)
        stdout = self._read_until(CTRL_D, deadline, "the end of the program's output", running=True)[:-1]
        stderr = self._read_until(CTRL_D, deadline, "the end of the error output", running=True)[:-1]
        prompt = self._read_until(b">", deadline, "the raw prompt")
        if prompt != b">" and SOFT_REBOOT in prompt:  # the reboot's banner, or output saying so
            head = stdout + CTRL_D + stderr + CTRL_D
            while not prompt.endswith(BANNER) and not ends_whole_reply(head + prompt):
                prompt += self._read_until(b">", deadline, "the raw REPL banner after a soft reboot")
            if prompt.endswith(BANNER):
                self._rebooted_at_exit(prompt, stdout, deadline)
        if prompt != b">" or not (stderr == b"" or (stderr.endswith(b"\n") and ERROR_START.match(stderr))):
            reply = stdout + CTRL_D + stderr + CTRL_D + prompt  # a 0x04 in the output or error
            while not ends_whole_reply(reply):
                reply += self._read_until(CTRL_D + b">", deadline, "the end of the error output", running=True)
            stdout, stderr = split_reply(reply[:-2])
        return ExecResult(stdout, stderr)

    def _rebooted_at_exit(self, prompt: bytes, stdout: bytes, deadline: Deadline) -> None:
        """The program ended with SystemExit and current firmware soft-rebooted in the raw REPL.

        The reply then carries ``soft reboot`` and a fresh raw banner instead of
        the bare prompt: the board is at an idle raw prompt, but its RAM is gone.
        """
        if not prompt.endswith(BANNER):  # boot.py printed a '>' of its own
            prompt += self._read_until(BANNER, deadline, "the raw REPL banner after a soft reboot")
        raise BoardRebooted(
            f"{self.label}: the program ended with a soft reboot (SystemExit?); RAM was cleared",
            stdout + prompt,
            at_prompt=True,
        )

    def _send_source(self, source: bytes, deadline: Deadline) -> None:
        """Send a program and see it accepted: raw-paste mode where the board has it and the
        source is longer than the pacing window, plain raw mode otherwise.

        A short source in plain raw mode is one exchange (source, then ``OK``) where
        raw-paste takes two (the request and its window, then the data and its
        acknowledgement); it fits the window that plain raw mode sends at once on any
        board, so it needs no flow control. While the answer to the raw-paste request
        is unknown (entering settles it) the request is made.
        """
        short = len(source) + 1 <= min(self.pacing.window, SHORT_SOURCE)
        if self.raw_paste is not False and not (short and self.raw_paste) and self._start_raw_paste(deadline):
            self._send_raw_paste(source, deadline)
        else:
            self._send_plain(source)
            self._expect_ok(deadline)

    def _send_plain(self, source: bytes) -> None:
        self._transport.write(source + CTRL_D)

    def _expect_ok(self, deadline: Deadline) -> None:
        ok = self._read_exact(2, deadline, "OK")
        if ok != b"OK":
            raise ProtocolError(f"{self.label}: expected OK after the source, got {ok!r}")

    def _start_raw_paste(self, deadline: Deadline) -> bool:
        """Ask for raw-paste mode; remember the answer for this connection.

        A board that supports it answers at once, one that does not answers
        with a refusal or a fresh banner; one that says nothing at all (the
        WebAssembly port's bridge) gets plain raw mode after a short wait, and
        the raw REPL is entered afresh, whatever it made of the request.
        """
        self._transport.write(RAW_PASTE_REQUEST)
        if not self._buf and not self._fill(min(RAW_PASTE_ANSWER_SECONDS, deadline.remaining())):
            self.raw_paste = False
            self.enter(deadline)
            return False
        head = self._read_exact(2, deadline, "the raw-paste answer")
        if head == b"R\x01":
            self.raw_paste = True
            return True
        if head == b"R\x00":
            self._read_until(b">", deadline, "the raw prompt after a raw-paste refusal")
        else:  # old firmware: Ctrl-A restarted the raw REPL
            self._buf[:0] = head
            self._read_until(BANNER, deadline, "the raw REPL banner after a raw-paste request")
        self.raw_paste = False
        return False

    def _send_raw_paste(self, source: bytes, deadline: Deadline) -> None:
        window = struct.unpack("<H", self._read_exact(2, deadline, "the raw-paste window"))[0]
        allowed, sent = 0, 0
        while sent < len(source):
            if allowed == 0 and not self._buf:
                if not self._fill(deadline.remaining()) and deadline.expired():
                    raise BoardTimeout(f"{self.label}: no flow-control window from the board")
                continue
            if self._buf or self._fill(0):
                byte = bytes(self._buf[:1])
                del self._buf[:1]
                if byte == b"\x01":
                    allowed += window
                elif byte == CTRL_D:  # the board aborted (e.g. a syntax error)
                    self._transport.write(CTRL_D)
                    return
                else:
                    raise ProtocolError(f"{self.label}: unexpected {byte!r} during raw paste")
                continue
            piece = source[sent : sent + allowed]
            self._transport.write(piece)
            sent += len(piece)
            allowed -= len(piece)
        self._transport.write(CTRL_D)
        # Window grants may still arrive before the end-of-data acknowledgement.
        while True:
            byte = self._read_exact(1, deadline, "the raw-paste end acknowledgement")
            if byte == CTRL_D:
                return
            if byte != b"\x01":
                raise ProtocolError(f"{self.label}: unexpected {byte!r} ending raw paste")

    @property
    def statement_room(self) -> int:
        """Bytes of source one exec may carry without staging."""
        return 4096 if self.raw_paste else self.pacing.window - 1

    # -- control -----------------------------------------------------------------

    def recover(self, seconds: float = INTERRUPT_SECONDS) -> None:
        """Interrupt whatever runs and return to an idle raw prompt, or raise.

        A failure is remembered (``interrupt_failed``, set by ``enter``) so that a
        timed-out exec and the recovery ladder go straight to heavier means
        instead of sending the same Ctrl-C again.
        """
        self.enter(Deadline(seconds))

    def soft_reset(self, deadline: Deadline) -> bytes:
        """Ctrl-D at an empty raw prompt; returns what the board printed while rebooting.

        A board that does not reboot (the WebAssembly port answers ``OK``) gets
        a clear error, and the raw REPL is entered afresh so that what it
        printed instead is not taken for the next program's answer.
        """
        self._transport.write(CTRL_D)
        try:
            out = self._read_until(SOFT_REBOOT, deadline, "'soft reboot'")
            out += self._read_until(BANNER, deadline, "the raw REPL banner after a soft reset")
        except BoardTimeout as exc:
            self._buf.clear()
            with contextlib.suppress(BoardTimeout):
                self.recover()
            raise BoardTimeout(f"{exc} (no soft reboot: RAM was not cleared)", exc.output) from None
        return out

    def leave(self) -> None:
        """Back to the friendly REPL, as a person at a terminal would expect to find it."""
        self._transport.write(CTRL_B)

    # -- the console: output outside any exchange --------------------------------

    def _to_console(self) -> None:
        """Bytes read but not part of any exchange belong to the console."""
        if self._buf:
            self.console.append(bytes(self._buf))
            self._buf.clear()

    def _collect_stray(self) -> None:
        """Before an exchange: what the board printed on its own goes to the console,
        so the exchange reads only its own answer."""
        for _ in range(STRAY_READS):
            if not self._fill(0):
                break
        self._to_console()

    def _pull(self, timeout: float) -> None:
        """Wait up to ``timeout`` for output and add it to the console."""
        self._fill(timeout)
        self._to_console()

    def expect(self, pattern: re.Pattern[bytes], deadline: Deadline, what: str) -> re.Match[bytes]:
        """The first match of ``pattern`` in output not yet consumed, waiting for more until ``deadline``."""
        self._to_console()
        looked = False  # at what already arrived, once the deadline has passed (timeout=0 is a look)
        while True:
            found = self.console.search(pattern)
            if found is not None:
                return found
            if deadline.expired() and not looked:
                looked = True
                self._collect_stray()
                continue
            if deadline.expired():
                raise BoardTimeout(
                    f"{self.label}: timed out after {deadline.seconds:g}s waiting for {what}; "
                    f"the last output was: {readable(self.console.tail())!r}",
                    self.console.tail(ERROR_TAIL),
                )
            self._pull(deadline.remaining())

    def start(self, source: bytes, deadline: Deadline) -> None:
        """Send ``source`` to run and return once the board accepted it; its output
        then goes to the console until ``finish``."""
        self._collect_stray()
        self._send_source(self._sendable(source, deadline), deadline)
        self._program_from = self.console.end
        self.state = State.RUNNING
        self._to_console()

    def finish(self, deadline: Deadline, *, interrupt: bool = True) -> ExecResult:
        """End the background program (Ctrl-C unless it ended by itself) and return to the
        idle prompt. Its output stays in the console; the reply's framing is taken out."""
        self._collect_stray()
        if self._reply_end() is not None:
            interrupt = False  # it has ended: a Ctrl-C now could only land on the next program
        nudge = deadline.sooner(NUDGE_SECONDS)
        if interrupt:
            self._transport.write(CTRL_C)
        while True:
            if interrupt and nudge.expired():
                # A program blocked reading input (input(), a UART read) sees the Ctrl-C only
                # once it gets a byte: end its line, and interrupt again (as enter() does).
                self._transport.write(b"\r" + CTRL_C)
                nudge = deadline.sooner(NUDGE_SECONDS)
            self._to_console()
            found = self._reply_end()
            if found is not None:
                body_end = found - 2  # before the last 0x04 and the prompt
                stdout, stderr = split_reply(self.console.between(self._program_from, body_end))
                self.console.cut(body_end - len(stderr) - 1, found)  # the framing and the error
                self.state = State.IDLE
                return ExecResult(stdout, stderr)
            if REBOOTED in self.console.between(self._program_from, self.console.end):
                self.state = State.UNKNOWN
                raise BoardRebooted(f"{self.label}: the board rebooted while running the background program")
            if deadline.expired():
                self.state = State.UNKNOWN  # the next exchange interrupts it the hard way
                raise BoardTimeout(
                    f"{self.label}: the background program did not end within {deadline.seconds:g}s"
                    f"{' of Ctrl-C' if interrupt else ''}; the last output was: {readable(self.console.tail())!r}",
                    self.console.tail(ERROR_TAIL),
                )
            self._fill(min(nudge.remaining(), deadline.remaining()) if interrupt else deadline.remaining())

    def _reply_end(self) -> int | None:
        """Where the background program's whole reply ends in the console (absolute), if it has."""
        at = self._program_from
        while (found := self.console.find_from(at, REPLY_END)) is not None:
            base, end = found
            if is_whole_reply(self.console.between(self._program_from, base + end.end() - 2)):
                return base + end.end()
            at = base + end.start() + 1
        return None

    def write(self, data: bytes) -> None:
        """Bytes for whatever reads the board's input now (a program, the friendly REPL)."""
        self._transport.write(data)
        if self.state == State.IDLE:  # the raw REPL would take them as source: enter afresh
            self.state = State.UNKNOWN

    def rebooting(self) -> None:
        """The board is being reset: its output goes to the console until the next exchange
        enters the raw REPL again."""
        self._collect_stray()
        self.state = State.UNKNOWN

    def reattach(self, transport: Transport) -> None:
        """A new connection to the same board (its emulator restarted, its port came back)."""
        self._transport = transport
        self._buf.clear()
        self.raw_paste = None
        self.state = State.UNKNOWN


def _stage_pieces(source: bytes, limit: int) -> list[bytes]:
    """Statements that collect ``source`` in ``_bf_s`` on the board, each <= ``limit`` bytes.

    A bytearray grown in place: a list of pieces joined at the end fragments a
    small heap until the join itself cannot allocate. Pieces are sent as
    :func:`literals.expression`, so the board's parser interns none of them.
    """
    first, rest = b"_bf_s=bytearray(%s)", b"_bf_s.extend(%s)"
    room = limit - len(rest) + 2
    return [
        (rest if index else first) % literals.expression(piece).encode()
        for index, piece in enumerate(literals.pieces(source, room - (len(first) - len(rest))))
    ]


def _tail(data: bytes | bytearray, size: int = 200) -> bytes:
    return bytes(data[-size:])
