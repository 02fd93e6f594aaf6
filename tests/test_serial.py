"""Serial ports: the path every USB board takes, on an emulated board behind a pty.

The emulated micro:bit's UART is a TCP socket; ``PtyRelay`` puts a real tty
(``/dev/pts/N``) in front of it, so these tests go through pyserial's posix
port as a USB board does, and can unplug it. A pty has no modem lines, so
what the transport does with DTR and RTS is checked on a recording port.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import serial
import serial.tools.list_ports

from pytest_boardfarm import connect
from pytest_boardfarm import pool as pool_module
from pytest_boardfarm.deadline import Deadline
from pytest_boardfarm.emulator import MicrobitEmulator, _die_with_parent, check_installed, free_port
from pytest_boardfarm.errors import ConnectionLost
from pytest_boardfarm.inventory import BoardSpec, parse_farm
from pytest_boardfarm.pool import BoardPool, BoardUnavailable
from pytest_boardfarm.transport import SerialTransport

from .ptyrelay import PtyRelay
from .test_plugin import outcomes, run


@pytest.fixture(scope="module")
def board_emulator() -> Iterator[MicrobitEmulator]:
    """An emulator of this module's own: a relay holds its one TCP connection."""
    check_installed()
    with MicrobitEmulator() as emu:
        yield emu


@pytest.fixture
def relay(board_emulator: MicrobitEmulator, tmp_path: Path) -> Iterator[PtyRelay]:
    """The emulated board as a tty, under a stable name (like /dev/serial/by-id/...)."""
    with PtyRelay(board_emulator.url, link=tmp_path / "ttyBOARD") as pty:
        yield pty


# -- the board API over a tty ----------------------------------------------------


def test_board_over_a_serial_device(relay: PtyRelay) -> None:
    data = bytes(range(256)) * 3
    with connect(relay.path, timeout=10) as board:
        assert isinstance(board._transport, SerialTransport)
        assert board.exec("print('hi')") == "hi\n"
        board.exec("x = 5")
        board.put(data, "blob.bin")
        try:
            assert board.get("blob.bin") == data
        finally:
            board.remove("blob.bin")
        assert "soft reboot" in board.soft_reset()
        with pytest.raises(Exception, match="NameError"):
            board.exec("x")  # the soft reset cleared RAM


def test_port_vanishing_mid_exec_is_connection_lost(relay: PtyRelay) -> None:
    with connect(relay.path, timeout=30) as board:
        unplug = threading.Timer(0.3, relay.vanish)
        unplug.start()
        try:
            with pytest.raises(ConnectionLost, match=re.escape(relay.path)):
                board.exec("import microbit\nmicrobit.sleep(5000)")  # seen at once, not at the 30 s deadline
        finally:
            unplug.join()
        with pytest.raises(ConnectionLost):
            board.exec("print(1)")


def test_a_held_port_cannot_be_opened_twice(relay: PtyRelay) -> None:
    with connect(relay.path, timeout=10) as first:
        with pytest.raises(ConnectionLost, match=f"cannot open {re.escape(relay.path)}: .*exclusively lock"):
            connect(relay.path, timeout=2)
        with pytest.raises(ConnectionLost, match="exclusively lock"):
            connect(relay.device, timeout=2)  # the same tty by another name
        assert first.eval("1 + 1") == 2  # the refused open did not disturb the holder
    with connect(relay.path, timeout=10) as second:
        assert second.eval("2 + 2") == 4


# -- serial over IP: RFC 2217 ----------------------------------------------------


@pytest.fixture
def ser2net(relay: PtyRelay, tmp_path: Path) -> Iterator[str]:
    """Debian's ser2net serving the board's tty over RFC 2217; yields the port's URL."""
    binary = shutil.which("ser2net") or shutil.which("ser2net", path="/usr/sbin:/sbin")
    if binary is None:
        pytest.skip("ser2net is not installed (apt-get install ser2net; scripts/setup does)")
    port = free_port()
    config = tmp_path / "ser2net.yaml"
    config.write_text(
        "connection: &board\n"
        f"  accepter: telnet(rfc2217),tcp,127.0.0.1,{port}\n"
        f"  connector: serialdev,{relay.device},115200n81,local\n"
    )
    argv = [binary, "-n", "-u", "-P", str(tmp_path / "ser2net.pid"), "-c", str(config)]  # -u: no UUCP lock files
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
    try:
        deadline = Deadline(10)
        while True:
            assert proc.poll() is None, f"ser2net exited with {proc.returncode}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert not deadline.expired(), "ser2net did not listen within 10 s"
                time.sleep(0.05)
        yield f"rfc2217://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


RFC2217_WARNINGS = pytest.mark.filterwarnings("ignore:set(Daemon|Name)\\(\\) is deprecated:DeprecationWarning")


@RFC2217_WARNINGS
def test_board_over_rfc2217(ser2net: str) -> None:
    # ser2net cannot set a pty's modem lines, so it never acknowledges the change: ign_set_control.
    url = ser2net + "?ign_set_control"
    data = bytes(range(256))
    with connect(url, timeout=10) as board:
        assert board.exec("print('over IP')") == "over IP\n"
        board.put(data, "net.bin")
        try:
            assert board.get("net.bin") == data
        finally:
            board.remove("net.bin")
        assert "soft reboot" in board.soft_reset()


def test_rfc2217_server_that_cannot_set_the_lines_still_opens(ser2net: str) -> None:
    # Our own RFC 2217 client never waits for the server to confirm DTR/RTS, so no '?ign_set_control'.
    with connect(ser2net, timeout=10) as board:
        assert board.eval("6 * 7") == 42
        board.hard_reset_lines()  # requests the server cannot carry out on a pty: sent, not waited for
        assert board.eval("'\\xff' * 3") == "\xff" * 3  # UTF-8 c3 bf: a 0xbf, never an IAC, on the wire


@RFC2217_WARNINGS
def test_rfc2217_through_pyserial_still_gets_a_hint(ser2net: str) -> None:
    with pytest.raises(ConnectionLost, match=r"cannot open rfc2217://.*needs '\?ign_set_control'"):
        SerialTransport(ser2net)


# -- DTR and RTS -----------------------------------------------------------------


class RecordingPort:
    """Stands in for a pyserial port: records how it was made and what its lines did."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.url = url
        self.kwargs = kwargs
        self.timeout = 0.0
        self.lines: dict[str, bool | None] = {"dtr": None, "rts": None}
        self.at_open: tuple[bool | None, bool | None] | None = None
        self.changes: list[tuple[str, bool]] = []  # after open

    def _set(self, line: str, value: bool) -> None:
        self.lines[line] = value
        if self.at_open is not None:
            self.changes.append((line, value))

    dtr = property(lambda self: self.lines["dtr"], lambda self, v: self._set("dtr", v))
    rts = property(lambda self: self.lines["rts"], lambda self, v: self._set("rts", v))

    def open(self) -> None:
        self.at_open = (self.dtr, self.rts)

    def close(self) -> None:
        pass


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[RecordingPort]:
    made: list[RecordingPort] = []

    def serial_for_url(url: str, **kwargs: Any) -> RecordingPort:
        made.append(RecordingPort(url, **kwargs))
        return made[-1]

    monkeypatch.setattr(serial, "serial_for_url", serial_for_url)
    return made


def test_dtr_and_rts_are_asserted_from_the_moment_the_port_opens(recording: list[RecordingPort]) -> None:
    SerialTransport("/dev/ttyACM0")
    assert recording[0].at_open == (True, True)  # stm32 and TinyUSB ports send nothing with DTR low


@pytest.mark.parametrize(("dtr", "rts"), [(True, True), (False, False), (True, False)])
def test_configured_lines_hold_and_survive_a_reset_pulse(recording: list[RecordingPort], dtr: bool, rts: bool) -> None:
    transport = SerialTransport("/dev/ttyACM0", dtr=dtr, rts=rts)
    port = recording[0]
    assert port.at_open == (dtr, rts)
    transport.pulse_reset(0)
    # RTS alone asserted (EN low), released with DTR low (a normal boot), then the idle lines, DTR first.
    assert port.changes == [("dtr", False), ("rts", True), ("rts", False), ("dtr", dtr), ("rts", rts)]
    assert (port.dtr, port.rts) == (dtr, rts)


def test_device_paths_open_exclusively_and_rfc2217_without_write_timeout(recording: list[RecordingPort]) -> None:
    SerialTransport("/dev/ttyACM0", write_timeout=4)
    SerialTransport("rfc2217://127.0.0.1:2217")
    SerialTransport("loop://")
    device, rfc2217, loop = (port.kwargs for port in recording)
    assert device["exclusive"] is True and device["write_timeout"] == 4
    assert rfc2217["write_timeout"] is None  # pyserial's rfc2217 raises NotImplementedError for one
    assert not rfc2217["exclusive"] and not loop["exclusive"]


def test_real_pyserial_url_handlers_open_with_these_settings() -> None:
    transport = SerialTransport("loop://", dtr=False, rts=True)
    try:
        transport.write(b"ping")
        assert transport.read(1) == b"ping"
        transport.pulse_reset(0)
        assert (transport._port.dtr, transport._port.rts) == (False, True)
    finally:
        transport.close()


def test_reset_pulse_on_a_port_without_modem_lines_is_a_board_error(relay: PtyRelay) -> None:
    """A pty (or a USB CDC port that refuses) has no lines: the ladder gets a BoardError, not an OSError."""
    transport = SerialTransport(relay.path)
    try:
        with pytest.raises(ConnectionLost, match=f"{re.escape(relay.path)}: cannot set DTR/RTS"):
            transport.pulse_reset(0)
    finally:
        transport.close()


def test_farm_yaml_lines_reach_the_port(relay: PtyRelay, tmp_path: Path) -> None:
    farm = parse_farm(
        f"locks: {{dir: {tmp_path / 'locks'}}}\n"
        f"boards:\n  - {{name: usb, port: '{relay.path}', dtr: false, rts: false}}\n",
        "farm.yaml",
        tmp_path,
    )
    assert (farm.get("usb").dtr, farm.get("usb").rts) == (False, False)
    assert (BoardSpec("x").dtr, BoardSpec("x").rts) == (True, True)
    pool = BoardPool(farm, lock_timeout=5)
    try:
        transport = pool.acquire("usb").board._transport
        assert isinstance(transport, SerialTransport)
        assert (transport._port.dtr, transport._port.rts) == (False, False)
    finally:
        pool.release_all()


def test_dtr_and_rts_must_be_booleans() -> None:
    with pytest.raises(Exception, match=r"farm.yaml:2: boards\[0\].dtr: expected true or false, got 'low'"):
        parse_farm("boards:\n  - {name: x, port: p, dtr: low}\n", "farm.yaml", Path("/farm"))


# -- a port that comes back after a hard reset -----------------------------------


def test_reconnect_waits_for_a_device_path_to_come_back(tmp_path: Path) -> None:
    port = tmp_path / "ttyACM0"
    spec = BoardSpec("usb", port=str(port))
    with pytest.raises(BoardUnavailable, match=f"no device at {re.escape(str(port))} \\(waited 0.3s"):
        pool_module._port_for(spec, 0.3)
    plug_in = threading.Timer(0.5, port.touch)
    plug_in.start()
    try:
        assert pool_module._port_for(spec, 10) == str(port)
    finally:
        plug_in.cancel()


def test_reconnect_waits_for_a_serial_number_to_come_back(monkeypatch: pytest.MonkeyPatch) -> None:
    board = SimpleNamespace(device="/dev/ttyACM3", serial_number="E6614C")
    other = SimpleNamespace(device="/dev/ttyUSB0", serial_number="A50285BI")
    listings = iter([[other], [other], [], [other, board]])  # the hub is cycling; the board re-enumerates
    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: next(listings, [other, board]))
    monkeypatch.setattr(pool_module, "PORT_POLL_SECONDS", 0.01)
    spec = BoardSpec("usb", serial_number="E6614C")
    assert pool_module._port_for(spec, 10) == "/dev/ttyACM3"

    monkeypatch.setattr(serial.tools.list_ports, "comports", lambda: [other])
    with pytest.raises(BoardUnavailable, match=r"serial number 'E6614C'; present: /dev/ttyUSB0 .*waited 0.2s"):
        pool_module._port_for(spec, 0.2)


UNPLUG_SUITE = """
import os, time

def test_unplugged(board):
    open({trigger!r}, "w").close()
    for _ in range(500):  # until the hub has unplugged the port
        if not os.path.lexists({port!r}):
            break
        time.sleep(0.01)
    board.exec("print('still there?')")

def test_back(board):
    assert board.eval("6 * 7") == 42
"""

# Stands in for udev in the run under test: the USB serial ports are what the hub lists.
FAKE_UDEV = """
import pathlib, types
import serial.tools.list_ports

def comports(include_links=False):
    listing = pathlib.Path({listing!r})
    lines = listing.read_text().splitlines() if listing.exists() else []
    return [types.SimpleNamespace(device=d, serial_number=s) for d, s in (line.split() for line in lines)]

serial.tools.list_ports.comports = comports
"""


class Hub:
    """Plays a USB hub for a run: unplugs the board when its test asks, powers it up again
    1.5 s after the farm's reset command ran (when ``comes_back``), and keeps the list of
    USB serial ports (``listing``: device and serial number) up to date."""

    def __init__(self, relay: PtyRelay, tmp_path: Path, *, comes_back: bool = True, serial_number: str = "") -> None:
        self.relay = relay
        self.comes_back = comes_back
        self.serial_number = serial_number
        self.trigger, self.cycled, self.listing = (tmp_path / n for n in ("unplug", "power-cycled", "ports"))
        self._list()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _list(self) -> None:
        present = self.relay.present and self.serial_number
        self.listing.write_text(f"{self.relay.device} {self.serial_number}\n" if present else "")

    def _wait_for(self, path: Path) -> bool:
        while not self._done.is_set():
            if path.exists():
                return True
            time.sleep(0.01)
        return False

    def _run(self) -> None:
        if not self._wait_for(self.trigger):
            return
        self.relay.vanish()
        self._list()
        if self.comes_back and self._wait_for(self.cycled):
            time.sleep(1.5)  # re-enumerating
            self.relay.come_back()
            self._list()

    def __enter__(self) -> Hub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)


def unplug_run(pytester: pytest.Pytester, hub: Hub, tmp_path: Path, board: str, reset: bool = True) -> pytest.RunResult:
    reset_command = f", reset: [touch, '{hub.cycled}']" if reset else ""
    (pytester.path / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path / 'locks'}}}\nboards:\n  - {{name: usb, {board}, timeout: 3{reset_command}}}\n"
    )
    pytester.makeconftest(FAKE_UDEV.format(listing=str(hub.listing)))
    old_name = hub.relay.path if hub.relay.link else hub.relay.device
    pytester.makepyfile(test_suite=UNPLUG_SUITE.format(trigger=str(hub.trigger), port=old_name))
    with hub:
        return run(pytester, "--farm", "farm.yaml")


def test_unplugged_board_is_waited_for_after_its_hard_reset(
    pytester: pytest.Pytester, relay: PtyRelay, tmp_path: Path
) -> None:
    """The hub power cycle (the reset command) brings the port back 1.5 s later; recovery waits for it."""
    hub = Hub(relay, tmp_path)
    result = unplug_run(pytester, hub, tmp_path, f"port: '{relay.path}'")
    got = outcomes(result)
    assert got == {"test_suite.py::test_unplugged[usb]": "FAILED", "test_suite.py::test_back[usb]": "PASSED"}
    out = result.stdout.str()
    assert "ConnectionLost" in out
    assert f"hard reset: ok - ran touch {hub.cycled}" in out
    assert "ok (recovered 1x)" in out.split("boardfarm: results per board")[1]


def test_unplugged_board_is_found_again_by_serial_number_under_a_new_name(
    pytester: pytest.Pytester, board_emulator: MicrobitEmulator, tmp_path: Path
) -> None:
    with PtyRelay(board_emulator.url) as relay:  # no stable name: only the serial number finds it again
        hub = Hub(relay, tmp_path, serial_number="E6614C")
        first_device = relay.device
        held = os.open(first_device, os.O_RDONLY | os.O_NOCTTY)  # so the board comes back under another name
        try:
            result = unplug_run(pytester, hub, tmp_path, "serial_number: E6614C")
        finally:
            os.close(held)
        assert relay.device != first_device
    got = outcomes(result)
    assert got == {"test_suite.py::test_unplugged[usb]": "FAILED", "test_suite.py::test_back[usb]": "PASSED"}
    assert f"hard reset: ok - ran touch {hub.cycled}" in result.stdout.str()


def test_unplugged_board_that_never_comes_back_is_quarantined_naming_its_port(
    pytester: pytest.Pytester, relay: PtyRelay, tmp_path: Path
) -> None:
    start = time.monotonic()
    result = unplug_run(
        pytester, Hub(relay, tmp_path, comes_back=False), tmp_path, f"port: '{relay.path}'", reset=False
    )
    assert time.monotonic() - start < 60
    got = outcomes(result)
    assert got == {"test_suite.py::test_unplugged[usb]": "FAILED", "test_suite.py::test_back[usb]": "ERROR"}
    out = result.stdout.str()
    assert f"reconnect: failed - no device at {relay.path} (waited 10s for it to come back)" in out
    assert "board usb quarantined" in out
