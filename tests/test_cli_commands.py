"""The ``boardfarm`` subcommands (issue 12), run as a user runs them, on emulated boards."""

from __future__ import annotations

import json
import os
import pwd
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_boardfarm import connect
from pytest_boardfarm.cli_farm import port_rows
from pytest_boardfarm.emulator import MicrobitEmulator
from pytest_boardfarm.emulators import start_many
from pytest_boardfarm.inventory import parse_farm
from pytest_boardfarm.locks import BoardLock

from .procs import signal_when
from .ptyrelay import PtyRelay

BOARDFARM = [sys.executable, "-m", "pytest_boardfarm.cli"]
MISSING = "/dev/serial/by-id/usb-MicroPython_Board_in_FS_mode_e6614103e7-if00"
WAIT = 60.0  # generous: five engineers share two cores


@pytest.fixture(scope="module")
def boards() -> Iterator[list[MicrobitEmulator]]:
    """Two emulated boards outside any run, shared the way a farm's real boards are."""
    started = start_many(2)
    yield started
    for board in started:
        board.stop()


@pytest.fixture
def farm(tmp_path: Path, boards: list[MicrobitEmulator]) -> Path:
    path = tmp_path / "farm.yaml"
    path.write_text(
        f"locks: {{dir: {tmp_path / 'locks'}}}\n"
        "boards:\n"
        f"  - {{name: mb-1, port: '{boards[0].url}', platform: microbit, tags: [fast]}}\n"
        f"  - {{name: mb-2, port: '{boards[1].url}', platform: microbit}}\n"
        f"  - {{name: usb-1, port: '{MISSING}', platform: rp2}}\n"
    )
    return path


def boardfarm(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BOARDFARM, *args], capture_output=True, text=True, timeout=WAIT * 2, cwd=cwd, env=env or dict(os.environ)
    )


def me() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


# -- the command itself -------------------------------------------------------------------------


def test_no_arguments_prints_the_help_and_version_prints_the_version() -> None:
    done = boardfarm()
    assert done.returncode == 0
    for command in ("list", "ports", "check", "exec", "run", "eval", "deploy", "reset", "flash", "monitor", "repl"):
        assert command in done.stdout
    done = boardfarm("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"boardfarm {version('pytest-boardfarm')}"


def test_no_farm_anywhere_is_a_usage_error_saying_where_to_give_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BOARDFARM_INVENTORY"}
    done = boardfarm("list", cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "no farm inventory: give --farm PATH, set $BOARDFARM_INVENTORY" in done.stderr


def test_the_farm_is_found_as_pytest_finds_it(tmp_path: Path, farm: Path) -> None:
    """``boardfarm_inventory`` in pyproject.toml, relative to that file, from a subdirectory; the
    environment variable wins over it, and --farm over both."""
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\nboardfarm_inventory = "farm.yaml"\n')
    sub = tmp_path / "tests" / "deep"
    sub.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k != "BOARDFARM_INVENTORY"}
    done = boardfarm("list", "--board", "mb-2", cwd=sub, env=env)
    assert done.returncode == 0, done.stderr
    assert "mb-2" in done.stdout
    other = tmp_path / "other.yaml"
    other.write_text("boards:\n  - {name: only-here, port: /dev/nonexistent-tty}\n")
    done = boardfarm("list", cwd=sub, env={**env, "BOARDFARM_INVENTORY": str(other)})
    assert "only-here" in done.stdout and "mb-2" not in done.stdout
    done = boardfarm("list", "--farm", str(farm), cwd=sub, env={**env, "BOARDFARM_INVENTORY": str(other)})
    assert "mb-2" in done.stdout and "only-here" not in done.stdout


def test_an_unknown_board_is_named_with_the_ones_that_exist(farm: Path) -> None:
    done = boardfarm("exec", "--farm", str(farm), "--board", "mb-3", "print(1)")
    assert done.returncode == 2
    assert "no board named 'mb-3' in the farm (did you mean 'mb-2'?); the farm has: mb-1, mb-2, usb-1" in done.stderr
    done = boardfarm("exec", "--farm", str(farm), "--board-tag", "slow", "print(1)")
    assert done.returncode == 2 and "no board matches tags=['slow']" in done.stderr


# -- check --------------------------------------------------------------------------------------


def test_check_prints_every_problem_with_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "farm.yaml"
    bad.write_text(
        "boards:\n  - {name: a, port: /dev/ttyACM0, baudrate: fast}\n  - {name: b}\n  - {name: a, port: /dev/ttyACM1}\n"
    )
    done = boardfarm("check", str(bad))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{bad}:2: boards[0].baudrate: expected ")
    assert lines[1].startswith(f"{bad}:3: boards[1] (b).port: missing;")
    assert lines[2].startswith(f"{bad}:4: boards[2].name: duplicate board name 'a'")
    assert lines[-1] == f"3 problems in {bad}"


def test_check_passes_a_valid_farm_and_finds_it_as_pytest_does(farm: Path) -> None:
    done = boardfarm("check", str(farm))
    assert (done.returncode, done.stdout.strip()) == (0, f"{farm}: ok, 3 boards")
    done = boardfarm("check", env={**os.environ, "BOARDFARM_INVENTORY": str(farm)})
    assert done.returncode == 0 and "ok, 3 boards" in done.stdout


def test_check_of_a_missing_file_says_so(tmp_path: Path) -> None:
    done = boardfarm("check", str(tmp_path / "nope.yaml"))
    assert done.returncode == 1 and "cannot read the farm inventory" in done.stdout


def test_check_takes_the_farm_as_the_other_commands_do(tmp_path: Path) -> None:
    """``check --farm PATH`` is ``check PATH``, and wins over $BOARDFARM_INVENTORY as --farm does elsewhere."""
    good = tmp_path / "good.yaml"
    good.write_text("boards:\n  - {name: a, port: /dev/nonexistent-tty}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("boards:\n  - {name: b}\n")
    done = boardfarm("check", "--farm", str(good), env={**os.environ, "BOARDFARM_INVENTORY": str(bad)})
    assert (done.returncode, done.stdout.strip()) == (0, f"{good}: ok, 1 board"), done.stderr
    done = boardfarm("check", "--farm", str(bad))
    assert done.returncode == 1 and done.stdout.splitlines()[-1] == f"1 problem in {bad}"
    assert boardfarm("check", "--farm", str(good), str(good)).returncode == 0  # the same file twice is fine
    done = boardfarm("check", "--farm", str(good), str(bad))
    assert done.returncode == 2 and "two farm files" in done.stderr


# -- list ---------------------------------------------------------------------------------------

HOLDING_SUITE = """
import os, time
def test_hold(board):
    with open(os.environ["STARTED"], "w") as f:
        f.write(board.name)
    time.sleep(120)
"""


@pytest.fixture
def pytest_holding_mb1(tmp_path: Path, farm: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A pytest session running a test on mb-1 (and holding its lock) until killed."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_hold.py").write_text(HOLDING_SUITE)
    started = tmp_path / "started"
    env = dict(os.environ, STARTED=str(started), BOARDFARM_RUN_ID="run nightly-42")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--farm", str(farm), "--board", "mb-1", "-q"],
        cwd=suite,
        env=env,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + WAIT
        while not started.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert started.exists(), "the pytest session never got to its test"
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_list_shows_free_locked_with_its_holder_and_port_missing(
    farm: Path, pytest_holding_mb1: subprocess.Popen[bytes]
) -> None:
    done = boardfarm("list", "--farm", str(farm))
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert done.stdout.splitlines()[0].split() == ["board", "platform", "tags", "port", "state"]
    holder = f"locked by {me()}@{socket.gethostname()} pid {pytest_holding_mb1.pid} since "
    assert holder in rows["mb-1"] and rows["mb-1"].endswith(", run nightly-42")
    assert rows["mb-2"].split()[1:] == ["microbit", "-", str(rows["mb-2"].split()[3]), "free"]
    assert rows["usb-1"].split()[1:] == ["rp2", "-", MISSING, "port", "missing"]
    data = {row["name"]: row for row in json.loads(boardfarm("list", "--farm", str(farm), "--json").stdout)}
    assert data["mb-1"]["state"].startswith(holder) and data["mb-1"]["tags"] == ["fast"]
    assert data["mb-2"]["state"] == "free" and data["usb-1"]["state"] == "port missing"


def test_exec_waits_for_a_locked_board_then_names_its_holder_and_the_rest_carry_on(
    farm: Path, pytest_holding_mb1: subprocess.Popen[bytes]
) -> None:
    done = boardfarm(
        "exec", "--farm", str(farm), "--board", "mb-1", "--board", "mb-2", "--lock-timeout", "0.5", "print(6 * 7)"
    )
    assert done.returncode == 1
    assert "mb-2: 42" in done.stdout.splitlines()
    (locked,) = [line for line in done.stdout.splitlines() if line.startswith("mb-1: ")]
    assert f"pid {pytest_holding_mb1.pid}" in locked and "run nightly-42" in locked and "gave up after 0.5s" in locked


def test_list_probe_shows_firmware_unique_id_and_memory_and_quarantines_a_silent_board(
    tmp_path: Path, boards: list[MicrobitEmulator]
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    farm = tmp_path / "farm.yaml"
    farm.write_text(
        f"locks: {{dir: {tmp_path / 'locks'}}}\nboards:\n"
        f"  - {{name: mb-1, port: '{boards[0].url}'}}\n"
        f"  - {{name: silent, port: 'socket://127.0.0.1:{silent.getsockname()[1]}', timeout: 1}}\n"
    )
    try:
        done = boardfarm("list", "--farm", str(farm), "--probe", "--json")
    finally:
        silent.close()
    assert done.returncode == 0, done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert "MicroPython v1.9.2" in rows["mb-1"]["firmware"] and rows["mb-1"]["state"] == "free"
    assert len(rows["mb-1"]["unique_id"]) == 16 and 1000 < rows["mb-1"]["mem_free"] < 16384
    assert rows["silent"]["state"].startswith("quarantined: ") and "recovery ladder" in rows["silent"]["state"]


# -- ports --------------------------------------------------------------------------------------


def test_ports_marks_the_devices_farm_yaml_names() -> None:
    """No USB here: pyserial's port list is faked, the marking is what is tested."""
    farm = parse_farm(
        "boards:\n  - {name: pico, serial_number: E6614103E7}\n"
        "  - {name: esp, port: /dev/serial/by-id/usb-Silicon_Labs_CP2102-if00}\n"
    )
    ports = [
        SimpleNamespace(device="/dev/ttyACM0", vid=0x2E8A, pid=0x0005, serial_number="E6614103E7", description="Board"),
        SimpleNamespace(device="/dev/ttyUSB0", vid=0x10C4, pid=0xEA60, serial_number="0001", description="CP2102"),
        SimpleNamespace(device="/dev/ttyACM1", vid=0x0D28, pid=0x0204, serial_number="9900", description="micro:bit"),
    ]
    links = {"/dev/ttyUSB0": "/dev/serial/by-id/usb-Silicon_Labs_CP2102-if00"}
    rows = port_rows(ports, farm, links)
    assert [(r.device, r.vid_pid, r.board) for r in rows] == [
        ("/dev/ttyACM0", "2e8a:0005", "pico"),
        ("/dev/ttyUSB0", "10c4:ea60", "esp"),
        ("/dev/ttyACM1", "0d28:0204", ""),
    ]
    assert rows[1].by_id == "/dev/serial/by-id/usb-Silicon_Labs_CP2102-if00"


def test_ports_runs_on_this_machine(farm: Path) -> None:
    from serial.tools import list_ports

    present = list(list_ports.comports())
    done = boardfarm("ports", "--farm", str(farm), "--all", "--json")
    assert done.returncode == 0, done.stderr
    assert sorted(row["device"] for row in json.loads(done.stdout)) == sorted(p.device for p in present)
    done = boardfarm("ports", "--farm", str(farm))
    assert done.returncode == 0
    usb = [p for p in present if p.vid is not None]
    assert ("no USB serial devices" in done.stdout) == (not usb)


# -- exec, run, eval ---------------------------------------------------------------------------


def test_exec_on_every_selected_board_prefixes_each_line(farm: Path) -> None:
    done = boardfarm("exec", "--farm", str(farm), "--board", "mb-2", "--board", "mb-1", "print('a')\nprint('b')")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == ["mb-1: a", "mb-1: b", "mb-2: a", "mb-2: b"]  # farm order, whole blocks
    done = boardfarm("exec", "--farm", str(farm), "--board-tag", "fast", "print('a')")
    assert (done.returncode, done.stdout) == (0, "mb-1: a\n")


def test_exec_prints_the_device_traceback_and_fails(farm: Path) -> None:
    done = boardfarm("exec", "--farm", str(farm), "--board", "mb-1", "--board", "mb-2", "print('before')\n1/0")
    assert done.returncode == 1
    for name in ("mb-1", "mb-2"):
        assert f"{name}: before\n{name}: Traceback (most recent call last):\n" in done.stdout
        assert f"{name}: ZeroDivisionError: division by zero" in done.stdout


def test_a_missing_port_fails_that_board_only(farm: Path) -> None:
    done = boardfarm("eval", "--farm", str(farm), "6 * 7", "--json")
    assert done.returncode == 1
    rows = {row["board"]: row for row in json.loads(done.stdout)}
    assert rows["mb-1"]["ok"] and rows["mb-1"]["value"] == 42 and rows["mb-2"]["value"] == 42
    assert not rows["usb-1"]["ok"] and f"no device at {MISSING}" in rows["usb-1"]["error"]


def test_run_a_local_file_and_eval_an_expression(farm: Path, tmp_path: Path) -> None:
    script = tmp_path / "hello.py"
    script.write_text("import sys\nprint('hello from', sys.platform)\n")
    done = boardfarm("run", "--farm", str(farm), "--board", "mb-2", str(script))
    assert (done.returncode, done.stdout) == (0, "mb-2: hello from microbit\n")
    done = boardfarm("eval", "--farm", str(farm), "--board", "mb-2", "[1, 'two', None]")
    assert (done.returncode, done.stdout) == (0, "mb-2: [1, 'two', None]\n")
    done = boardfarm("run", "--farm", str(farm), str(tmp_path / "nope.py"))
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_a_runaway_program_is_interrupted_at_the_timeout(farm: Path) -> None:
    done = boardfarm("exec", "--farm", str(farm), "--board", "mb-2", "--timeout", "1", "while True:\n    pass")
    assert done.returncode == 1
    assert done.stdout.startswith("mb-2: ")
    done = boardfarm("eval", "--farm", str(farm), "--board", "mb-2", "1 + 1")
    assert (done.returncode, done.stdout) == (0, "mb-2: 2\n")


# -- deploy, reset ------------------------------------------------------------------------------


def test_deploy_copies_then_skips_and_ends_with_a_table(farm: Path, tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "greet.py").write_text("def hello():\n    return 'hi'\n")
    args = ("--farm", str(farm), "--board", "mb-1", "--board", "mb-2")
    done = boardfarm("deploy", str(app), *args)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert f"mb-1: deploying {app} to /" in lines and "mb-1: copied 1, unchanged 0" in lines
    assert lines[-4].split() == ["board", "result", "seconds"] and lines[-3].split()[:2] == ["mb-1", "ok"]
    assert lines[-1].startswith("2 of 2 boards ok in ")
    done = boardfarm("deploy", str(app), *args)
    assert "mb-2: copied 0, unchanged 1" in done.stdout.splitlines()
    done = boardfarm("eval", "--farm", str(farm), "--board", "mb-1", "__import__('greet').hello()")
    assert done.stdout == "mb-1: 'hi'\n"
    boardfarm("exec", *args, "import os\nos.remove('greet.py')")


def test_reset_soft_and_hard(farm: Path, tmp_path: Path) -> None:
    done = boardfarm("exec", "--farm", str(farm), "--board", "mb-2", "bf_mark = 1")
    assert done.returncode == 0
    done = boardfarm("eval", "--farm", str(farm), "--board", "mb-2", "'bf_mark' in globals()")
    assert done.stdout == "mb-2: True\n"  # RAM outlives a connection; only the reset clears it
    done = boardfarm("reset", "--farm", str(farm), "--board", "mb-2")
    assert done.returncode == 0 and "mb-2: soft reset" in done.stdout.splitlines()
    done = boardfarm("eval", "--farm", str(farm), "--board", "mb-2", "'bf_mark' in globals()")
    assert done.stdout == "mb-2: False\n"
    done = boardfarm("reset", "--hard", "--farm", str(farm), "--board", "mb-2")
    assert done.returncode == 1
    assert "no hard reset: farm.yaml gives no 'reset' command or 'rts_reset'" in done.stdout
    sim = tmp_path / "sim.yaml"
    sim.write_text(f"locks: {{dir: {tmp_path}}}\nboards:\n  - {{name: sim-1, emulator: microbit}}\n")
    done = boardfarm("reset", "--hard", "--farm", str(sim))
    assert done.returncode == 0, done.stdout
    assert "sim-1: hard reset: restarted the emulator" in done.stdout.splitlines()


# -- monitor and repl, through a pty ------------------------------------------------------------


class Terminal:
    """A command with a pty as its terminal; every read has a deadline."""

    def __init__(self, args: list[str]) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.seen = b""

    def expect(self, text: bytes, timeout: float = WAIT) -> bytes:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} not seen; got {self.seen[-500:]!r}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    self.seen += os.read(self.master, 4096)
                except OSError:  # the command ended and the pty hung up
                    assert text in self.seen, f"{text!r} not seen; got {self.seen[-500:]!r}"
        return self.seen

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=WAIT)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


def read_until(sock: socket.socket, wanted: bytes, deadline: float, seen: bytes = b"") -> bytes:
    while wanted not in seen:
        assert time.monotonic() < deadline, seen
        seen += sock.recv(256)
    return seen


def start_ticking(url: str) -> None:
    """Leave the board printing ticks with nobody connected: a program a monitor should show.
    (Sent by the board API, paced: 74 bytes at once could overrun the micro:bit's 64-byte
    receive buffer on a loaded host, and the program never started.)"""
    with connect(url, timeout=10, name="ticker") as board:
        board.start("import microbit\nfor i in range(400):\n    print('tick', i)\n    microbit.sleep(100)\n")


def test_monitor_streams_output_holding_the_lock_and_ctrl_bracket_leaves(
    farm: Path, boards: list[MicrobitEmulator]
) -> None:
    start_ticking(boards[1].url)
    term = Terminal([*BOARDFARM, "monitor", "--farm", str(farm), "mb-2"])
    try:
        term.expect(f"boardfarm: mb-2 at {boards[1].url}, locked (read-only; Ctrl-] or Ctrl-C leaves)".encode())
        term.expect(b"tick ")
        seen = term.seen
        first = int(seen[seen.index(b"tick ") + 5 :].split(b"\r")[0])
        term.expect(f"tick {first + 2}\r\n".encode())  # a live stream, not one read
        listed = boardfarm("list", "--farm", str(farm), "--board", "mb-2")
        assert f"locked by {me()}@{socket.gethostname()} pid {term.proc.pid} since " in listed.stdout
        assert listed.stdout.rstrip().endswith(", boardfarm monitor")
        term.type(b"x\x1d")
        assert term.wait() == 0
    finally:
        term.close()
    listed = boardfarm("list", "--farm", str(farm), "--board", "mb-2")
    assert listed.stdout.rstrip().endswith("free")
    done = boardfarm("eval", "--farm", str(farm), "--board", "mb-2", "6 * 7")  # interrupts the ticking program
    assert done.stdout == "mb-2: 42\n"


def test_monitor_waits_for_the_lock_and_names_the_holder(farm: Path, tmp_path: Path) -> None:
    holder = BoardLock(tmp_path / "locks", parse_farm(farm.read_text()).get("mb-2").port or "", run="a CI job")
    holder.acquire(1)
    try:
        done = boardfarm("monitor", "--farm", str(farm), "--lock-timeout", "0.3", "mb-2")
    finally:
        holder.release()
    assert done.returncode == 1
    assert f"pid {os.getpid()}" in done.stderr and "a CI job" in done.stderr and "gave up after 0.3s" in done.stderr


def test_repl_is_interactive_ctrl_c_interrupts_and_ctrl_bracket_leaves(
    farm: Path, boards: list[MicrobitEmulator]
) -> None:
    term = Terminal([*BOARDFARM, "repl", "--farm", str(farm), "mb-1"])
    try:
        term.expect(f"boardfarm: mb-1 at {boards[0].url}, locked (Ctrl-] leaves)".encode())
        term.expect(b">>> ")
        term.type(b"print(6 * 7)\r")
        term.expect(b"42\r\n>>> ")
        term.type(b"while True:\r")
        term.expect(b"... ")
        term.type(b"pass\r\x08\x08\x08\x08\r")
        time.sleep(0.5)
        term.type(b"\x03")  # Ctrl-C goes to the board, as in mpremote
        term.expect(b"KeyboardInterrupt")
        term.type(b"'still' + ' here'\r")
        term.expect(b"'still here'")
        term.type(b"\x1d")
        assert term.wait() == 0
    finally:
        term.close()
    assert boardfarm("list", "--farm", str(farm), "--board", "mb-1").stdout.rstrip().endswith("free")


# -- ports as USB boards have them: a tty behind a by-id link, or found by serial number -------


def test_a_by_id_port_and_a_serial_number_are_resolved_to_their_device(
    tmp_path: Path, boards: list[MicrobitEmulator], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pty stands in for the USB device (tests/ptyrelay.py); pyserial's list is faked for the serial number."""
    from pytest_boardfarm import cli

    link = tmp_path / "usb-MicroPython_Board_e6614103-if00"
    with PtyRelay(boards[1].url, link=link) as relay:
        farm = tmp_path / "farm.yaml"
        farm.write_text(
            f"locks: {{dir: {tmp_path / 'locks'}}}\nboards:\n"
            f"  - {{name: by-id, port: '{link}'}}\n"
            "  - {name: by-serial, serial_number: E6614103}\n"
        )
        fake = SimpleNamespace(device=relay.device, vid=0x2E8A, pid=0x0005, serial_number="E6614103", description="x")
        monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [fake])
        assert cli.main(["list", "--farm", str(farm)]) == 0
        rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
        assert f"{link} -> {relay.device}" in rows["by-id"] and rows["by-id"].endswith("free")
        assert f"serial E6614103 -> {relay.device}" in rows["by-serial"]
        assert cli.main(["eval", "--farm", str(farm), "--board", "by-serial", "6 * 7"]) == 0
        assert capsys.readouterr().out == "by-serial: 42\n"
        assert cli.main(["eval", "--farm", str(farm), "--board", "by-id", "6 * 7"]) == 0
        assert capsys.readouterr().out == "by-id: 42\n"
        relay.vanish()  # unplugged
        assert cli.main(["list", "--farm", str(farm), "--board", "by-id"]) == 0
        assert capsys.readouterr().out.splitlines()[1].endswith("port missing")


def enter_raw_repl_and_leave(url: str) -> None:
    host, port = url.removeprefix("socket://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"\r\x03\x03\x01")
        read_until(sock, b"raw REPL; CTRL-B to exit\r\n>", time.monotonic() + 10)


def test_repl_on_a_board_left_in_its_raw_repl_shows_the_banner_and_prompt(
    farm: Path, boards: list[MicrobitEmulator]
) -> None:
    enter_raw_repl_and_leave(boards[0].url)
    term = Terminal([*BOARDFARM, "repl", "--farm", str(farm), "mb-1"])
    try:
        term.expect(b'Type "help()" for more information.\r\n>>> ')
        term.type(b"1 + 1\r")
        term.expect(b"2\r\n>>> ")
        term.type(b"\x1d")
        assert term.wait() == 0
    finally:
        term.close()


def test_monitor_sends_nothing_even_ctrl_c_which_leaves(farm: Path, boards: list[MicrobitEmulator]) -> None:
    start_ticking(boards[1].url)
    term = Terminal([*BOARDFARM, "monitor", "--farm", str(farm), "mb-2"])
    try:
        term.expect(b"tick ")
        term.type(b"\x03")
        assert term.wait() == 0
    finally:
        term.close()
    host, port = boards[1].url.removeprefix("socket://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:  # the program still runs
        seen, deadline = b"", time.monotonic() + 10
        while seen.count(b"tick ") < 2:
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([sock], [], [], 0.5)
            if ready:
                seen += sock.recv(256)
    assert b"KeyboardInterrupt" not in seen


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"])
def test_ctrl_c_during_exec_on_several_boards_stops_them_at_once_and_frees_them(
    farm: Path, boards: list[MicrobitEmulator], tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """Each board works in a thread of its own: Ctrl-C reached only the main thread, which then
    waited for every board's program to reach --timeout before exiting. SIGTERM (a CI job
    cancelled) killed the command outright: its labgrid places stayed acquired."""
    proc = subprocess.Popen(
        [*BOARDFARM, "exec", "--farm", str(farm), "--board", "mb-1", "--board", "mb-2", "--timeout", "300"]
        + ["while True:\n    pass"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    locks = [BoardLock(tmp_path / "locks", board.url) for board in boards]
    # 0.5 s after both are locked: in the program (or still bringing a board up: either must stop)
    out, err = signal_when(proc, lambda: not any(lock.is_free() for lock in locks), sig, settle=0.5, wait=WAIT)
    assert (proc.returncode, err) == (code, "boardfarm: interrupted\n"), out + err
    assert all(lock.is_free() for lock in locks)
    done = boardfarm("eval", "--farm", str(farm), "--board", "mb-1", "--board", "mb-2", "1 + 1")
    assert (done.returncode, done.stdout) == (0, "mb-1: 2\nmb-2: 2\n"), done.stderr  # interrupted, usable


def test_ctrl_c_while_waiting_for_a_board_another_run_holds(farm: Path, boards: list[MicrobitEmulator]) -> None:
    lock = BoardLock(farm.parent / "locks", boards[0].url, run="another run")
    lock.acquire(0)
    try:
        proc = subprocess.Popen(
            [*BOARDFARM, "exec", "--farm", str(farm), "--board", "mb-1", "--lock-timeout", "300", "print(1)"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1.0)  # waiting for the lock (or not yet: either must stop)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)  # far less than the lock timeout
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        lock.release()
    assert (proc.returncode, err) == (130, "boardfarm: interrupted\n"), out + err


def test_code_that_is_not_utf8_text_is_a_usage_error(farm: Path) -> None:
    for command in ("exec", "eval"):
        argv = [*BOARDFARM, command, "--farm", str(farm), "--board", "mb-1", b"print('\xff')"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT)
        assert done.returncode == 2 and "is not UTF-8 text" in done.stderr, done.stdout + done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
