"""Serve MicroPython's unix port like a board's UART: its REPL on a pseudo-terminal, the
pseudo-terminal's other end on a local TCP port.

Usage: python unixport_bridge.py HOST PORT ROOT COMMAND...

COMMAND runs the unix port. It gets a pseudo-terminal as its controlling terminal, in raw
mode except for Ctrl-C, which the terminal turns into SIGINT: the port's KeyboardInterrupt,
as a board's UART interrupt turns it into one. The port itself turns that off (ISIG) while
it reads a line or a raw-paste upload, and runs a raw-paste program so: the bridge then
sends the SIGINT itself where the port runs code. The port's file system is ROOT: before a
client sees the board, the bridge mounts ROOT at ``/`` through the raw REPL.

The unix port exits where a board soft-reboots (Ctrl-D at an empty prompt, SystemExit in
the raw REPL), so the bridge does what a board's main loop does: it prints the reboot line,
starts a fresh interpreter on the same files and brings it back to the REPL it was in.
Where the port dies of a signal instead (a segfault), it does what a board does after a
fault: resets, prints its boot banner and comes up in the friendly REPL.

One client at a time: a new connection replaces the old one, as a re-opened serial port
does. A client that takes no output is waited for, as a host by a board on USB: the port's
prints wait, nothing is lost. Prints "listening PORT" once it listens. Exits when its stdin closes (the parent
holds the pipe) or on SIGTERM, and takes the interpreter with it. Standard library only:
it runs as a script, without importing pytest_boardfarm.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import select
import signal
import socket
import subprocess
import sys
import termios
import time
import tty

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
FRIENDLY_PROMPT = b">>> "
SOFT_REBOOT = b"MPY: soft reboot\r\n"
CTRL_A, CTRL_B, CTRL_C, CTRL_D = b"\x01", b"\x02", b"\x03", b"\x04"
SETUP_SECONDS = 20.0  # a fresh interpreter's start on a loaded host
BACKLOG = 4096  # output waiting for the client beyond which the port is not read (its prints wait)
SEND_BUFFER = 16384  # the socket's own, kept small: what a client that reads nothing finds waiting is
# about what a board on USB would have queued, not megabytes of old output
EXIT_SECONDS = 1.0  # a port that has closed its terminal is exiting: what it exits with tells a crash


class BridgeError(Exception):
    pass


def _terminal_and_parent() -> None:  # runs in the child between fork and exec, after setsid
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: never outlive the bridge


class Interpreter:
    """One run of the unix port on its own pseudo-terminal."""

    def __init__(self, command: list[str], root: str) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[3] |= termios.ISIG | termios.NOFLSH  # Ctrl-C is SIGINT; nothing queued is dropped
        attrs[6][termios.VQUIT] = 0  # no other byte is a signal
        attrs[6][termios.VSUSP] = 0
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=root,
                start_new_session=True,
                preexec_fn=_terminal_and_parent,
            )
        finally:
            os.close(slave)
        self.fd = master
        os.set_blocking(master, False)
        self.pending = b""  # for the interpreter, not yet taken by its terminal

    def running_code_deaf(self) -> bool:
        """Whether it runs code (its SIGINT handler is installed) on a terminal that makes
        no SIGINT of Ctrl-C: the port sets its terminal raw, ISIG off, to read a line or a
        raw-paste upload, and runs a raw-paste program without setting it back."""
        try:
            if termios.tcgetattr(self.fd)[3] & termios.ISIG:
                return False
            with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("SigCgt:"):
                        return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
        except (OSError, termios.error, ValueError):
            pass
        return False

    def read(self) -> bytes | None:
        """What it printed: None if nothing yet, b"" once it has exited and all is read."""
        try:
            return os.read(self.fd, 4096)
        except BlockingIOError:
            return None
        except OSError:  # EIO: it has exited and closed its end
            return b""

    def flush(self) -> None:
        """Hand the terminal what it takes now of ``pending`` (its input queue is finite)."""
        try:
            written = os.write(self.fd, self.pending)
        except BlockingIOError:
            return
        except OSError:  # it has exited: the bytes go nowhere, as on a rebooting board
            written = len(self.pending)
        self.pending = self.pending[written:]

    def exchange(self, data: bytes, marker: bytes) -> bytes:
        """Send ``data``, then read until ``marker``; raise if it exits or takes too long."""
        self.pending += data
        seen = b""
        deadline = time.monotonic() + SETUP_SECONDS
        while marker not in seen:
            self.flush()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BridgeError(f"no {marker!r} from the unix port within {SETUP_SECONDS:g}s: {seen[-200:]!r}")
            select.select([self.fd], [self.fd] if self.pending else [], [], min(remaining, 0.1))
            output = self.read()
            if output == b"":
                raise BridgeError(f"the unix port exited ({self.proc.wait()}): {seen[-200:]!r}")
            seen += output or b""
        return seen

    def stop(self, grace: float = 0.0) -> int:
        """End it (after ``grace`` seconds to exit by itself); its exit status."""
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        status = self.proc.wait()
        os.close(self.fd)
        return status


class Bridge:
    def __init__(self, host: str, port: int, root: str, command: list[str]) -> None:
        self.root = root
        self.command = command
        self.server = socket.create_server((host, port))
        self.client: socket.socket | None = None
        self.outgoing = bytearray()  # for the client, not yet taken by its socket
        self.banner = b""
        self.raw_mode = False  # which REPL a soft reboot returns to, as pyexec remembers it
        self.interpreter = self.boot()

    def boot(self) -> Interpreter:
        """A fresh interpreter with ROOT as its file system, in the REPL the board was in."""
        interpreter = Interpreter(self.command, self.root)
        self.banner = interpreter.exchange(b"", FRIENDLY_PROMPT)  # ends 'Type "help()" ...>>> ' as a board's
        interpreter.exchange(CTRL_A, RAW_BANNER)
        mount = f"import vfs,os\nvfs.umount('/')\nvfs.mount(vfs.VfsPosix({self.root!r}),'/')\nos.chdir('/')\n"
        reply = interpreter.exchange(mount.encode() + CTRL_D, b"\x04>")
        if not reply.startswith(b"OK\x04"):
            raise BridgeError(f"could not mount {self.root} on the unix port: {reply!r}")
        if not self.raw_mode:
            interpreter.exchange(CTRL_B, FRIENDLY_PROMPT)
        return interpreter

    def reboot(self) -> None:
        """It exited: a soft reboot, back to its REPL. Or a signal ended it (SIGSEGV, say):
        a fault, after which a board resets, prints its boot banner and is in the friendly
        REPL (what tells a client that a running program ended in a reboot)."""
        crashed = self.interpreter.stop(grace=EXIT_SECONDS) < 0
        if crashed:
            self.raw_mode = False
        else:
            self.emit(SOFT_REBOOT)
        self.interpreter = self.boot()
        self.emit(self.banner if crashed else RAW_BANNER if self.raw_mode else FRIENDLY_PROMPT)

    def emit(self, data: bytes) -> None:
        if self.client is None:
            return  # nobody listens, as on a UART with nothing attached
        self.outgoing += data
        self.send()

    def send(self) -> None:
        """Hand the client's socket what it takes now of ``outgoing``. A client that takes
        nothing is waited for, as a board on USB waits for its host: the port is not read
        meanwhile (``BACKLOG``), so its prints wait; nothing is lost, nobody is dropped."""
        if self.client is None or not self.outgoing:
            return
        try:
            sent = self.client.send(self.outgoing)
        except BlockingIOError:
            return
        except OSError:
            self.drop_client()
            return
        del self.outgoing[:sent]

    def drop_client(self) -> None:
        self.outgoing.clear()
        if self.client is not None:
            self.client.close()
            self.client = None

    def receive(self, data: bytes) -> None:
        for byte in data:
            if byte == CTRL_A[0]:
                self.raw_mode = True
            elif byte == CTRL_B[0]:
                self.raw_mode = False
        if CTRL_C in data and self.interpreter.running_code_deaf():
            # A board's UART takes Ctrl-C as its interrupt while code runs, whatever the
            # REPL: so does the bridge, one SIGINT a Ctrl-C, as the terminal would.
            for _ in range(data.count(CTRL_C)):
                self.interpreter.proc.send_signal(signal.SIGINT)
            data = data.replace(CTRL_C, b"")
        self.interpreter.pending += data
        self.interpreter.flush()

    def serve(self) -> None:
        print(f"listening {self.server.getsockname()[1]}", flush=True)
        stdin = sys.stdin.fileno()
        while True:
            interpreter = self.interpreter
            listening = len(self.outgoing) < BACKLOG
            readers = (
                [self.server, stdin] + ([interpreter.fd] if listening else []) + ([self.client] if self.client else [])
            )
            writers = ([interpreter.fd] if interpreter.pending else []) + (
                [self.client] if self.client and self.outgoing else []
            )
            readable, _, _ = select.select(readers, writers, [], 1.0)
            if stdin in readable and not os.read(stdin, 4096):
                return  # the parent closed the pipe: it is gone or stopping us
            if self.server in readable:
                connection, _ = self.server.accept()
                self.drop_client()
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
                connection.setblocking(False)
                self.client = connection
            elif self.client is not None and self.client in readable:
                try:
                    data: bytes | None = self.client.recv(4096)
                except BlockingIOError:
                    data = None
                except OSError:
                    data = b""
                if data:
                    self.receive(data)
                elif data == b"":
                    self.drop_client()
            interpreter.flush()
            self.send()
            if listening and (interpreter.fd in readable or interpreter.proc.poll() is not None):
                output = interpreter.read()
                if output:
                    self.emit(output)
                elif output == b"" or interpreter.proc.poll() is not None:
                    self.reboot()

    def close(self) -> None:
        self.drop_client()
        self.interpreter.stop()
        self.server.close()


def main(argv: list[str]) -> int:
    if len(argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    host, port, root, *command = argv[1:]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        bridge = Bridge(host, int(port), os.path.abspath(root), command)
    except (OSError, BridgeError) as exc:
        print(f"unixport_bridge: {exc}", file=sys.stderr)
        return 1
    try:
        bridge.serve()
    except BridgeError as exc:
        print(f"unixport_bridge: {exc}", file=sys.stderr)
        return 1
    finally:
        bridge.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
