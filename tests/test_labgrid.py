"""Boards on other hosts, on labgrid's coordinator, with the real parts (issue 15).

A real ``labgrid-coordinator`` and ``labgrid-exporter`` run on 127.0.0.1 with
free ports. The exporter ("host A") publishes two emulated micro:bits as
NetworkSerialPorts: one as raw TCP straight to QEMU, one as RFC 2217 through
Debian's ser2net in front of a pty. Places are created and tagged with
``labgrid-client``. Runs are real pytest processes on a farm.yaml of
``place:`` boards. Everything started here is stopped here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_boardfarm.deadline import Deadline
from pytest_boardfarm.emulator import MicrobitEmulator, _die_with_parent, check_installed, free_port
from pytest_boardfarm.inventory import FarmConfigError, load_farm, parse_farm
from pytest_boardfarm.locks import LockTimeout
from pytest_boardfarm.places import (
    Coordinator,
    PlaceLock,
    dead_holder,
    farm_place_rows,
    holder_name,
    place_rows,
    process_start,
)

from .ptyrelay import PtyRelay
from .tcprelay import TcpRelay
from .test_plugin import outcomes

pytest.importorskip("labgrid", reason="labgrid is not installed (pip install -e '.[labgrid]'; scripts/setup does)")

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
HOST = socket.gethostname()


def _ser2net() -> str:
    binary = shutil.which("ser2net") or shutil.which("ser2net", path="/usr/sbin:/sbin")
    if binary is None:
        pytest.skip("ser2net is not installed (apt-get install ser2net; scripts/setup does)")
    return binary


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = Deadline(30)
    while True:
        assert proc.poll() is None, f"{what} exited with {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert not deadline.expired(), f"{what} did not listen on {port} within 30 s"
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Lab:
    """A coordinator and what it serves, all started by this test module."""

    dir: Path
    address: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    emulators: list[MicrobitEmulator] = field(default_factory=list)
    relays: list[PtyRelay] = field(default_factory=list)

    def start(self, argv: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.dir / log, "ab")  # noqa: SIM115 - the child's log, kept for failure messages
        proc = subprocess.Popen(argv, cwd=self.dir, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        out.close()
        self.procs.append(proc)
        return proc

    def client(self, *args: str, user: str = "tester") -> str:
        """labgrid-client, as a person at this host runs it."""
        env = dict(os.environ, LG_USERNAME=user)
        argv = [str(BIN / "labgrid-client"), "-x", self.address, *args]
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
        return result.stdout

    def exporter(self, name: str, groups: dict[str, tuple[int, str]], extra: str = "") -> subprocess.Popen[bytes]:
        """An exporter publishing one NetworkSerialPort per group: (port, protocol); ``extra``:
        more resources in the last group, as exporter YAML."""
        config = self.dir / f"{name}.yaml"
        config.write_text(
            "".join(
                f"{group}:\n  NetworkSerialPort:\n    host: 127.0.0.1\n    port: {port}\n    protocol: {protocol}\n"
                for group, (port, protocol) in groups.items()
            )
            + extra
        )
        argv = [str(BIN / "labgrid-exporter"), "-c", self.address, "-n", name, "--hostname", "127.0.0.1", str(config)]
        return self.start(argv, f"{name}.log")

    def place(self, name: str, exporter: str, group: str, resource: str = "NetworkSerialPort") -> None:
        self.client("-p", name, "create")
        self.client("-p", name, "add-match", f"{exporter}/{group}/{resource}")
        self.client("-p", name, "set-tags", f"board={group}")

    def wait_for(self, place: str, *, available: bool = True) -> None:
        """Until the place's serial port is (or is no longer) published by its exporter."""
        coordinator = Coordinator(self.address, name="lab-watcher")
        try:
            deadline = Deadline(30)
            while True:
                state = coordinator.state(place)
                if state is not None and (state.endpoint is not None) == available:
                    return
                assert not deadline.expired(), f"place {place}: {state}"
                time.sleep(0.1)
        finally:
            coordinator.close()

    def holder(self, place: str) -> str | None:
        coordinator = Coordinator(self.address, name="lab-watcher")
        try:
            state = coordinator.state(place)
            assert state is not None
            return state.acquired
        finally:
            coordinator.close()

    def log(self, name: str) -> str:
        path = self.dir / name
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in reversed(self.procs):
            _stop(proc)
        for relay in self.relays:
            relay.close()
        for emulator in self.emulators:
            emulator.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Host A's exporter serving 'raw-board' (raw TCP to QEMU) and 'net-board' (RFC 2217 via ser2net),
    places 'pl-raw' and 'pl-net' for them, on a coordinator of our own."""
    check_installed()
    ser2net = _ser2net()
    lab = Lab(tmp_path_factory.mktemp("lab"))
    try:
        raw, net = MicrobitEmulator().start(), MicrobitEmulator().start()
        lab.emulators += [raw, net]
        relay = PtyRelay(net.url)
        lab.relays.append(relay)
        net_port = free_port()
        (lab.dir / "ser2net.yaml").write_text(
            "connection: &board\n"
            f"  accepter: telnet(rfc2217),tcp,127.0.0.1,{net_port}\n"
            f"  connector: serialdev,{relay.device},115200n81,local\n"
        )
        argv = [ser2net, "-n", "-u", "-P", str(lab.dir / "ser2net.pid"), "-c", str(lab.dir / "ser2net.yaml")]
        _wait_listening(net_port, lab.start(argv, "ser2net.log"), "ser2net")
        port = free_port()
        lab.address = f"127.0.0.1:{port}"
        coordinator = lab.start([str(BIN / "labgrid-coordinator"), "-l", lab.address], "coordinator.log")
        _wait_listening(port, coordinator, "labgrid-coordinator")
        assert raw.port is not None
        lab.exporter("hostA", {"raw-board": (raw.port, "raw"), "net-board": (net_port, "rfc2217")})
        lab.place("pl-raw", "hostA", "raw-board")
        lab.place("pl-net", "hostA", "net-board")
        lab.wait_for("pl-raw")
        lab.wait_for("pl-net")
        yield lab
    finally:
        lab.stop()
    assert all(proc.poll() is not None for proc in lab.procs)


def remote_farm(path: Path, lab: Lab, extra: str = "", **board_keys: str) -> Path:
    keys = "".join(f"\n    {k}: {v}" for k, v in board_keys.items())
    path.write_text(
        f"coordinator: {lab.address}\n"
        "defaults:\n  timeout: 10\n"
        "boards:\n"
        f"  - name: remote-raw\n    place: pl-raw{keys}\n"
        f"  - name: remote-net\n    place: pl-net{keys}\n" + extra
    )
    return path


def pytest_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:labgrid", "-rA", "-v", *args]


def run_pytest(cwd: Path, *args: str, env: dict[str, str] | None = None) -> pytest.RunResult:
    proc = subprocess.run(
        pytest_argv(*args), cwd=cwd, capture_output=True, text=True, timeout=300, env=env or dict(os.environ)
    )
    lines = proc.stdout.splitlines()
    return pytest.RunResult(proc.returncode, lines, proc.stderr.splitlines(), 0.0)


def assert_places_free(lab: Lab, *places: str) -> None:
    for place in places:
        assert lab.holder(place) is None, f"{place} still held by {lab.holder(place)}"


# -- the demo suite on remote places ---------------------------------------------


def test_demo_suite_on_remote_places(lab: Lab, tmp_path: Path) -> None:
    farm = tmp_path / "farm.yaml"
    farm.write_text(
        f"coordinator: {lab.address}\n"
        f"defaults:\n  timeout: 10\n  deploy: {ROOT / 'examples/demo/app'}\n"
        "boards:\n"
        "  - {name: remote-raw, place: pl-raw, platform: microbit, tags: [display, fast]}\n"
        "  - {name: remote-net, place: pl-net, platform: microbit, tags: [display]}\n"
    )
    result = run_pytest(ROOT, "examples/demo", "--farm", str(farm), "-n", "auto")  # one worker per board
    got = outcomes(result)
    text = "\n".join(result.outlines)
    assert "created: 2/2 workers" in text, text[-3000:]
    failed = sorted(test for test, outcome in got.items() if outcome == "FAILED")
    assert failed == [
        "examples/demo/test_demo.py::test_reads_config_file[remote-net]",
        "examples/demo/test_demo.py::test_reads_config_file[remote-raw]",
    ], text[-3000:]
    assert "ERROR" not in got.values()
    for board in ("remote-raw", "remote-net"):
        assert sum(1 for test, o in got.items() if test.endswith(f"[{board}]") and o == "PASSED") >= 6
    assert "OSError: file not found" in text
    assert_places_free(lab, "pl-raw", "pl-net")


# -- sharing: two runs, two places -----------------------------------------------

RECORDING_SUITE = """\
import os, time, pytest

@pytest.mark.parametrize("i", range(3))
def test_busy(board, i):
    start = time.time()
    board.exec("import microbit\\nmicrobit.sleep(100)")
    with open(os.environ["RECORD"], "a") as f:
        f.write(f"{board.name} {os.environ['RUN']} {start} {time.time()}\\n")
"""


def test_two_runs_share_two_places_without_overlap(lab: Lab, tmp_path: Path) -> None:
    remote_farm(tmp_path / "farm.yaml", lab)
    (tmp_path / "test_busy.py").write_text(RECORDING_SUITE)
    record = tmp_path / "record.txt"
    procs = []
    for run_name in ("A", "B"):
        env = dict(os.environ, RECORD=str(record), RUN=run_name)
        argv = pytest_argv("--farm", "farm.yaml", "--farm-lock-timeout", "240")
        procs.append(subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[-2000:] for o in outputs]
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for line in record.read_text().splitlines():
        name, run_name, start, end = line.split()
        spans.setdefault(name, []).append((float(start), float(end), run_name))
    assert sorted(spans) == ["remote-net", "remote-raw"]
    for name, uses in spans.items():
        assert len(uses) == 6 and {u[2] for u in uses} == {"A", "B"}
        uses.sort()
        # A run holds a place from its first test on that board to its end: the other run waited
        # for all of it, so each board's uses come in two blocks, one per run.
        runs_in_order = [run for _, _, run in uses]
        assert runs_in_order in (["A"] * 3 + ["B"] * 3, ["B"] * 3 + ["A"] * 3), f"{name}: {runs_in_order}"
        for (_, end, run_a), (start, _, run_b) in zip(uses, uses[1:], strict=False):
            assert end <= start, f"{name} used by runs {run_a} and {run_b} at once"
    assert_places_free(lab, "pl-raw", "pl-net")


# -- dead runs, live runs and people ---------------------------------------------

HANGING_SUITE = """\
import os, time

def test_hang(board):
    with open(os.environ["STARTED"], "a") as f:
        f.write(board.name + "\\n")
    time.sleep(120)
"""


def start_hanging_run(lab: Lab, tmp_path: Path, **popen: Any) -> subprocess.Popen[str]:
    """A run of HANGING_SUITE on both places with two workers, once both tests have started."""
    remote_farm(tmp_path / "farm.yaml", lab)
    (tmp_path / "test_hang.py").write_text(HANGING_SUITE)
    started = tmp_path / "started"
    env = dict(os.environ, STARTED=str(started))
    argv = pytest_argv("--farm", "farm.yaml", "-n", "2")
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, text=True, start_new_session=True, **popen)
    deadline = Deadline(120)
    while len(started.read_text().splitlines() if started.exists() else []) < 2:
        if proc.poll() is not None or deadline.expired():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError("the run did not start both boards")
        time.sleep(0.1)
    return proc


def test_killed_runs_places_are_taken_over_by_the_next_run(lab: Lab, tmp_path: Path) -> None:
    proc = start_hanging_run(lab, tmp_path, stdout=subprocess.DEVNULL)
    try:
        holders = {place: lab.holder(place) for place in ("pl-raw", "pl-net")}
        for holder in holders.values():  # each held by a live worker of that run, named so
            assert holder is not None and re.fullmatch(rf"{re.escape(HOST)}/.+\+boardfarm-\d+-\d+", holder)
            assert not dead_holder(holder)
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its xdist workers, as a lost CI runner
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    time.sleep(0.2)
    assert {place: lab.holder(place) for place in holders} == holders  # labgrid keeps them acquired
    assert all(dead_holder(h) for h in holders.values() if h)
    (tmp_path / "test_hang.py").unlink()
    (tmp_path / "test_quick.py").write_text("def test_quick(board):\n    assert board.eval('1 + 1') == 2\n")
    result = run_pytest(tmp_path, "--farm", "farm.yaml", "--farm-lock-timeout", "30")
    text = "\n".join(result.outlines)
    assert outcomes(result) == {
        "test_quick.py::test_quick[remote-raw]": "PASSED",
        "test_quick.py::test_quick[remote-net]": "PASSED",
    }, text[-3000:]
    assert f"FarmWarning: remote-raw: took place pl-raw over from {holders['pl-raw']}" in text, text[-3000:]
    assert_places_free(lab, "pl-raw", "pl-net")


def test_a_place_held_by_a_person_is_never_taken(lab: Lab, tmp_path: Path) -> None:
    remote_farm(tmp_path / "farm.yaml", lab)
    (tmp_path / "test_quick.py").write_text("def test_quick(board):\n    assert board.eval('1 + 1') == 2\n")
    lab.client("-p", "pl-raw", "acquire", user="alice")
    try:
        result = run_pytest(tmp_path, "--farm", "farm.yaml", "--farm-lock-timeout", "2")
        assert lab.holder("pl-raw") == f"{HOST}/alice"
    finally:
        lab.client("-p", "pl-raw", "release", user="alice")
    text = "\n".join(result.outlines)
    assert outcomes(result) == {
        "test_quick.py::test_quick[remote-raw]": "ERROR",
        "test_quick.py::test_quick[remote-net]": "PASSED",
    }, text[-3000:]
    assert f"place 'pl-raw' is acquired by {HOST}/alice" in text and "gave up after 2s" in text
    assert_places_free(lab, "pl-raw", "pl-net")


def test_a_live_runs_place_is_waited_for_not_taken(lab: Lab) -> None:
    first = Coordinator(lab.address)  # this process: a live run of ours
    try:
        mine = PlaceLock(first, "pl-raw")
        mine.acquire(10)
        other = Coordinator(lab.address, name=holder_name(os.getppid()))  # another live process, same host
        try:
            with pytest.raises(LockTimeout, match=rf"acquired by {re.escape(first.holder)}.*gave up after 0.5s"):
                PlaceLock(other, "pl-raw").acquire(0.5)
            assert not PlaceLock(other, "pl-raw").is_free()
        finally:
            other.close()
        assert lab.holder("pl-raw") == first.holder
    finally:
        mine.release()
        first.close()
    assert lab.holder("pl-raw") is None


# -- a host that goes away mid-run -----------------------------------------------

HOST_DOWN_SUITE = """\
import os, time
from pathlib import Path
from typing import Any

def test_before(board):
    assert board.eval("1 + 1") == 2

def test_host_goes_down(board):
    if board.name == "far":
        Path(os.environ["STARTED"]).write_text("far")
        deadline = time.time() + 120
        while not Path(os.environ["GONE"]).exists() and time.time() < deadline:
            time.sleep(0.05)
    assert board.eval("2 + 2") == 4

def test_after(board):
    assert board.eval("3 + 3") == 6
"""


def test_exporter_stopped_mid_run_quarantines_its_board_only(lab: Lab, tmp_path: Path) -> None:
    """Host B (its exporter and its board) goes away while a run uses it: that board is
    quarantined, host A's board goes on, and every test gets a result."""
    far = MicrobitEmulator().start()
    try:
        assert far.port is not None
        exporter = lab.exporter("hostB", {"far-board": (far.port, "raw")})
        lab.place("pl-far", "hostB", "far-board")
        lab.wait_for("pl-far")
        (tmp_path / "farm.yaml").write_text(
            f"coordinator: {lab.address}\nboards:\n"
            "  - {name: near, place: pl-raw, timeout: 10}\n  - {name: far, place: pl-far, timeout: 10}\n"
        )
        (tmp_path / "test_down.py").write_text(HOST_DOWN_SUITE)
        started, gone = tmp_path / "started", tmp_path / "gone"
        env = dict(os.environ, STARTED=str(started), GONE=str(gone))
        proc = subprocess.Popen(pytest_argv("--farm", "farm.yaml"), cwd=tmp_path, env=env, stdout=subprocess.PIPE)
        try:
            deadline = Deadline(120)
            while not started.exists():
                assert proc.poll() is None and not deadline.expired(), "the run never reached the far board"
                time.sleep(0.05)
            _stop(exporter)  # host B goes down: its exporter, and the board behind it
            far.stop()
            lab.wait_for("pl-far", available=False)
            gone.write_text("gone")
            out = proc.communicate(timeout=240)[0].decode()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        far.stop()
    got = outcomes(pytest.RunResult(proc.returncode, out.splitlines(), [], 0.0))
    assert len(got) == 6, out[-3000:]
    assert {t: o for t, o in got.items() if t.endswith("[near]")} == {
        "test_down.py::test_before[near]": "PASSED",
        "test_down.py::test_host_goes_down[near]": "PASSED",
        "test_down.py::test_after[near]": "PASSED",
    }, out[-3000:]
    assert got["test_down.py::test_before[far]"] == "PASSED"
    assert got["test_down.py::test_host_goes_down[far]"] in ("FAILED", "ERROR")
    assert got["test_down.py::test_after[far]"] == "ERROR"
    assert "board far quarantined" in out and "pl-far" in out, out[-3000:]
    assert proc.returncode == 1
    assert_places_free(lab, "pl-raw", "pl-far")


# -- a hard reset through the place's power switch ------------------------------


class PowerSwitch:
    """A network power switch for an emulated board, as labgrid's ``simplerest`` model drives
    one (GET .../outlet/0/0 is off, .../1 is on): off freezes the board, on resets it."""

    def __init__(self, emulator: MicrobitEmulator) -> None:
        self.emulator = emulator
        self.calls: list[str] = []
        switch = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                value = self.path.rsplit("/", 1)[-1]
                switch.calls.append(value)
                if value == "0":
                    switch.emulator.pause()
                elif value == "1":
                    switch.emulator.resume()
                    switch.emulator.hard_reset()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"1")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/outlet/{{index}}/{{value}}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


RUNAWAY_SUITE = """\
def test_runaway(board):
    board.exec("while True:\\n    pass", timeout=2)

def test_after(board):
    assert board.eval("1 + 1") == 2
"""


def test_a_deaf_board_is_hard_reset_with_its_places_power_switch(lab: Lab, tmp_path: Path) -> None:
    """Ctrl-C never reaches this board (a relay drops it), so only a hard reset ends a runaway
    loop: the place's NetworkPowerPort is switched off and on, and the next test passes."""
    board = MicrobitEmulator().start()
    relay = TcpRelay(board.url, to_board=lambda data: data.replace(b"\x03", b""))
    switch = PowerSwitch(board)
    try:
        port = int(relay.url.rsplit(":", 1)[1])
        power = f"  NetworkPowerPort:\n    model: simplerest\n    host: '{switch.url}'\n    index: 0\n"
        exporter = lab.exporter("hostC", {"power-board": (port, "raw")}, extra=power)
        lab.place("pl-power", "hostC", "power-board", resource="*")  # its serial port and its power switch
        lab.wait_for("pl-power")
        (tmp_path / "farm.yaml").write_text(
            f"coordinator: {lab.address}\nboards:\n  - {{name: deaf, place: pl-power}}\n"
        )
        (tmp_path / "test_runaway.py").write_text(RUNAWAY_SUITE)
        result = run_pytest(tmp_path, "--farm", "farm.yaml")
        _stop(exporter)
    finally:
        switch.close()
        relay.close()
        board.stop()
    text = "\n".join(result.outlines)
    assert outcomes(result) == {
        "test_runaway.py::test_runaway[deaf]": "FAILED",
        "test_runaway.py::test_after[deaf]": "PASSED",
    }, text[-3000:]
    assert switch.calls == ["0", "1"]  # off, then on: one power cycle
    assert "power-cycled place pl-power (NetworkPowerPort)" in text, text[-3000:]


# -- boardfarm list rows, and the parts on their own -----------------------------


def test_list_rows_show_holders_state_and_endpoint(lab: Lab) -> None:
    lab.client("-p", "pl-net", "acquire", user="bob")
    coordinator = Coordinator(lab.address)
    try:
        rows = {row.board: row for row in place_rows(coordinator, [("a", "pl-raw"), ("b", "pl-net"), ("c", "nope")])}
    finally:
        coordinator.close()
        lab.client("-p", "pl-net", "release", user="bob")
    assert rows["a"].holder == "" and rows["a"].state == "free" and rows["a"].endpoint.startswith("socket://127.0.0.1:")
    assert rows["b"].holder == f"{HOST}/bob" and rows["b"].state == "held"
    assert rows["b"].endpoint.startswith("rfc2217://127.0.0.1:")
    assert rows["c"].state.startswith("missing") and rows["c"].endpoint == ""


def test_list_rows_for_a_farm(lab: Lab, tmp_path: Path) -> None:
    farm = load_farm(remote_farm(tmp_path / "farm.yaml", lab, extra="  - {name: sim, emulator: microbit}\n"))
    rows = farm_place_rows(farm)
    assert [(r.board, r.place, r.state) for r in rows] == [
        ("remote-raw", "pl-raw", "free"),
        ("remote-net", "pl-net", "free"),
    ]
    away = load_farm(tmp_path / "farm.yaml")
    away = dataclasses.replace(away, coordinator=f"127.0.0.1:{free_port()}")
    assert all(r.state.startswith("unknown: cannot reach the labgrid coordinator") for r in farm_place_rows(away))


def test_dead_holder_means_our_mark_this_host_and_no_such_process() -> None:
    me = holder_name()
    assert dead_holder(f"{HOST}/{me}") is False  # alive
    start = process_start(os.getpid())
    assert start is not None
    assert dead_holder(f"{HOST}/{me.rsplit('-', 1)[0]}-{start + 1}") is True  # pid reused by a later process
    with subprocess.Popen(["true"]) as child:
        pass
    assert dead_holder(f"{HOST}/me+boardfarm-{child.pid}-1") is True  # gone
    zombie = subprocess.Popen(
        ["true"]
    )  # exited, never reaped: as a killed run's orphans under an init that does not reap
    deadline = Deadline(10)
    while Path(f"/proc/{zombie.pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
        assert not deadline.expired()
        time.sleep(0.01)
    zombie_start = Path(f"/proc/{zombie.pid}/stat").read_text().split(")")[-1].split()[19]
    try:
        assert dead_holder(f"{HOST}/me+boardfarm-{zombie.pid}-{zombie_start}") is True
    finally:
        zombie.wait()
    assert dead_holder(f"another-host/me+boardfarm-{child.pid}-1") is False  # cannot see other hosts' processes
    assert dead_holder(f"{HOST}/alice") is False  # a person
    assert dead_holder(f"{HOST}/alice+boardfarm-x") is False


def test_farm_yaml_places_are_checked_with_file_line_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LG_COORDINATOR", raising=False)
    with pytest.raises(FarmConfigError) as caught:
        parse_farm("boards:\n  - name: pi1\n    place: pi1-pico\n  - name: pi2\n    place: p2\n    port: /dev/x\n")
    problems = caught.value.problems
    assert problems[0].startswith("farm.yaml:2: pi1.place: needs labgrid's coordinator")
    assert any(p.startswith("farm.yaml:4: boards[1] (pi2).place: a place's board") for p in problems), problems
    monkeypatch.setenv("LG_COORDINATOR", "lab-server:20408")
    farm = parse_farm("boards:\n  - {name: pi1, place: pi1-pico}\n  - {name: sim, emulator: microbit}\n")
    assert farm.coordinator == "lab-server:20408" and farm.get("pi1").place == "pi1-pico"
    farm = parse_farm("coordinator: here:1\nboards:\n  - {name: pi1, place: pi1-pico}\n")
    assert farm.coordinator == "here:1"
    with pytest.raises(FarmConfigError, match=r"farm.yaml:1: coordinator: not a HOST\[:PORT\] address"):
        parse_farm("coordinator: 'a b; rm'\nboards:\n  - {name: pi1, place: pi1-pico}\n")
    monkeypatch.setenv("LG_COORDINATOR", "lab server:1")  # was taken as it is, and failed at the first test
    with pytest.raises(FarmConfigError, match=r"farm.yaml:2: pi1.place: the coordinator from LG_COORDINATOR is not"):
        parse_farm("boards:\n  - {name: pi1, place: pi1-pico}\n")
    parse_farm("boards:\n  - {name: sim, emulator: microbit}\n")  # a farm without places does not care


def test_without_labgrid_a_farm_with_places_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_boardfarm import inventory

    monkeypatch.setattr(inventory, "labgrid_installed", lambda: False)
    with pytest.raises(FarmConfigError, match=r"farm.yaml:1: coordinator: remote places need labgrid.*\[labgrid\]"):
        parse_farm("coordinator: here:1\nboards:\n  - {name: pi1, place: pi1-pico}\n")
    parse_farm("boards:\n  - {name: sim, emulator: microbit}\n")  # a farm without places does not care


def test_labgrid_is_imported_only_for_places() -> None:
    code = (
        "import sys; from pytest_boardfarm import pool, inventory, plugin;"
        "inventory.parse_farm('boards:\\n  - {name: s, emulator: microbit}\\n');"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('labgrid', 'grpc')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_a_coordinator_that_is_not_there_is_a_clear_error() -> None:
    from pytest_boardfarm.places import PlaceError

    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(PlaceError, match=f"cannot reach the labgrid coordinator at {address}"):
        Coordinator(address)


def test_labgrid_pytest_plugin_is_off_here_and_harmless_elsewhere(tmp_path: Path) -> None:
    """labgrid's own pytest plugin loads in every run once labgrid is installed: this project
    turns it off (pyproject's addopts); a user's project that keeps it still runs farm tests."""

    def plugins(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "pytest", "--trace-config", "-p", "no:cacheprovider", *args]
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)

    here = plugins(ROOT, "--co", "-q", "tests/test_telnet.py")
    assert here.returncode == 0 and "test_telnet.py" in here.stdout
    assert "labgrid.pytestplugin" not in here.stdout
    (tmp_path / "farm.yaml").write_text("boards:\n  - {name: sim, emulator: microbit}\n")
    (tmp_path / "test_x.py").write_text("def test_x(board):\n    assert board.eval('1 + 1') == 2\n")
    elsewhere = plugins(tmp_path, "--farm", "farm.yaml", "-v")
    assert "labgrid.pytestplugin" in elsewhere.stdout  # loaded: the test above could see it
    assert "test_x.py::test_x[sim] PASSED" in elsewhere.stdout, elsewhere.stdout[-3000:]
    assert elsewhere.returncode == 0


def test_boardfarm_list_shows_places_with_their_holders(lab: Lab, tmp_path: Path) -> None:
    farm = remote_farm(tmp_path / "farm.yaml", lab, extra="  - {name: sim, emulator: microbit}\n")
    lab.client("-p", "pl-net", "acquire", user="bob")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest_boardfarm.cli", "list", "--farm", str(farm), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        lab.client("-p", "pl-net", "release", user="bob")
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert rows["remote-raw"]["state"] == "free" and rows["remote-raw"]["source"] == "labgrid"
    assert rows["remote-raw"]["port"].startswith("socket://127.0.0.1:")
    assert rows["remote-net"]["state"] == f"held ({HOST}/bob)"
    assert rows["sim"]["source"] == "farm.yaml" and rows["sim"]["state"] == "free"


def test_a_coordinator_that_is_not_there_errors_its_boards_and_the_others_run(tmp_path: Path) -> None:
    """Ordering asks whether each place is free before any test: a coordinator that cannot be
    reached must not end the run there (INTERNALERROR), and is tried once per process, not
    once per question (an address that never answers costs 20 s a try)."""
    (tmp_path / "farm.yaml").write_text(
        f"coordinator: 127.0.0.1:{free_port()}\nboards:\n"
        "  - {name: far-1, place: p1}\n  - {name: far-2, place: p2}\n  - {name: sim, emulator: microbit}\n"
    )
    (tmp_path / "test_quick.py").write_text("def test_quick(board):\n    assert board.eval('1 + 1') == 2\n")
    result = run_pytest(tmp_path, "--farm", "farm.yaml")
    text = "\n".join(result.outlines + result.errlines)
    assert "INTERNALERROR" not in text, text[-3000:]
    assert outcomes(result) == {
        "test_quick.py::test_quick[far-1]": "ERROR",
        "test_quick.py::test_quick[far-2]": "ERROR",
        "test_quick.py::test_quick[sim]": "PASSED",
    }, text[-3000:]
    assert text.count("cannot reach the labgrid coordinator at 127.0.0.1:") >= 2


def test_a_coordinator_that_is_not_there_is_tried_once_per_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_boardfarm import pool as pool_module
    from pytest_boardfarm.pool import BoardPool, BoardUnavailable

    tries: list[str] = []

    def counted(address: str) -> Coordinator:
        tries.append(address)
        return Coordinator(address)

    monkeypatch.setattr(pool_module, "Coordinator", counted)
    farm = parse_farm(
        f"coordinator: 127.0.0.1:{free_port()}\nboards:\n  - {{name: a, place: p1}}\n  - {{name: b, place: p2}}\n"
    )
    pool = BoardPool(farm, lock_timeout=1)
    try:
        assert pool.is_free("a") and pool.is_free("b")  # acquire() says what is wrong
        for name in ("a", "b"):
            with pytest.raises(BoardUnavailable, match="cannot reach the labgrid coordinator"):
                pool.acquire(name)
    finally:
        pool.release_all()
    assert len(tries) == 1


def test_sigterm_to_the_controller_alone_releases_its_workers_places(lab: Lab, tmp_path: Path) -> None:
    """`docker stop` or a CI runner signals the main process only; xdist stops busy workers by
    interrupting their main thread, as SIGINT would. A run started in the background by a shell
    script (`pytest ... &`) inherits SIGINT ignored, which makes that a no-op: xdist then
    SIGKILLs the workers after 10 s, and their places stay acquired in labgrid, where a run on
    another host can never take them over. The workers must stop and release them."""
    proc = start_hanging_run(
        lab,
        tmp_path,
        stdout=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `cmd &` in a script
    )
    try:
        proc.send_signal(signal.SIGTERM)  # the controller only
        out = proc.communicate(timeout=60)[0]
        holders = {place: lab.holder(place) for place in ("pl-raw", "pl-net")}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 2, out[-3000:]
    assert holders == {"pl-raw": None, "pl-net": None}, out[-3000:]
    assert "PASSED" not in out, out[-3000:]


def test_boardfarm_list_probe_probes_free_places_too(lab: Lab, tmp_path: Path) -> None:
    farm = remote_farm(tmp_path / "farm.yaml", lab, extra="  - {name: sim, emulator: microbit}\n")
    lab.client("-p", "pl-net", "acquire", user="bob")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest_boardfarm.cli", "list", "--farm", str(farm), "--probe", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        lab.client("-p", "pl-net", "release", user="bob")
    assert proc.returncode == 0, proc.stderr[-3000:]  # was a KeyError on the first place board
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert "MicroPython" in rows["remote-raw"]["firmware"] and "MicroPython" in rows["sim"]["firmware"]
    assert rows["remote-net"]["state"] == f"held ({HOST}/bob)" and not rows["remote-net"]["firmware"]
    assert_places_free(lab, "pl-raw")


def test_boardfarm_repl_on_a_place_holds_the_place(lab: Lab, tmp_path: Path) -> None:
    from .test_cli_commands import BOARDFARM, Terminal

    farm = remote_farm(tmp_path / "farm.yaml", lab)
    term = Terminal([*BOARDFARM, "repl", "--farm", str(farm), "remote-net"])
    try:
        term.expect(b">>> ")  # was "no device at": the place's serial port was never asked for
        holder = lab.holder("pl-net")
        term.type(b"6 * 7\r")
        term.expect(b"42\r\n>>> ")
        term.type(b"\x1d")
        assert term.wait() == 0
    finally:
        term.close()
    assert holder is not None and re.fullmatch(rf"{re.escape(HOST)}/.+\+boardfarm-\d+-\d+", holder)
    assert_places_free(lab, "pl-net")


def test_ctrl_c_while_a_place_is_being_acquired_leaves_it_free(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C can land after the coordinator granted the place but before the lock knew it had
    it: the place stayed acquired by a run about to end (a run on another host waits forever)."""
    coordinator = Coordinator(lab.address)
    try:
        granted = coordinator.try_acquire

        def then_interrupted(name: str) -> str | None:
            assert granted(name) is None
            raise KeyboardInterrupt

        monkeypatch.setattr(coordinator, "try_acquire", then_interrupted)
        lock = PlaceLock(coordinator, "pl-raw")
        with pytest.raises(KeyboardInterrupt):
            lock.acquire(5)
        lock.release()  # what the pool does with a lock it holds; this one it does not know it holds
        holder = lab.holder("pl-raw")
    finally:
        coordinator.release("pl-raw")  # if we still have it, for the next tests
        coordinator.close()
    assert holder is None


def test_a_place_that_cannot_be_released_is_told(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A coordinator that stops answering as the run ends leaves the place acquired: the user
    hears of it, and how to release it (it was silent)."""
    from pytest_boardfarm import places
    from pytest_boardfarm.pool import BoardPool

    told: list[str] = []
    pool = BoardPool(load_farm(remote_farm(tmp_path / "farm.yaml", lab)), lock_timeout=10, notice=told.append)
    coordinator = next(proc for proc in lab.procs if "labgrid-coordinator" in str(proc.args))
    try:
        pool.acquire("remote-raw")
        monkeypatch.setattr(places, "CALL_SECONDS", 1.0)
        coordinator.send_signal(signal.SIGSTOP)  # no answer, as a coordinator behind a lost link
        try:
            pool.release("remote-raw")
        finally:
            coordinator.send_signal(signal.SIGCONT)
        monkeypatch.setattr(places, "CALL_SECONDS", 30.0)
        assert len(told) == 1 and "cannot release place 'pl-raw'" in told[0], told
        assert "-p pl-raw release --kick" in told[0]
    finally:
        if pool._coordinator is not None:
            pool._coordinator.release("pl-raw")
        pool.release_all()
    assert_places_free(lab, "pl-raw")


def test_a_place_whose_exporter_is_down_says_so_not_that_it_has_no_serial_port(lab: Lab) -> None:
    """A place matching an exporter that is not connected (it exits when the coordinator
    goes away, until systemd restarts it) was said to have no NetworkSerialPort, with advice
    to add a match it already has."""
    lab.place("pl-ghost", "hostZ", "ghost-board")
    lab.client("-p", "pl-bare", "create")
    coordinator = Coordinator(lab.address)
    try:
        ghost, bare = coordinator.state("pl-ghost"), coordinator.state("pl-bare")
    finally:
        coordinator.close()
        lab.client("-p", "pl-ghost", "delete")
        lab.client("-p", "pl-bare", "delete")
    assert ghost is not None and ghost.endpoint is None
    assert ghost.problem.startswith("no exporter publishes a NetworkSerialPort it matches"), ghost.problem
    assert "hostZ/ghost-board/NetworkSerialPort" in ghost.problem
    assert bare is not None and bare.problem.startswith("it has no NetworkSerialPort (labgrid-client"), bare.problem


def test_boardfarm_hard_reset_of_a_place_without_power_names_the_power_resource(lab: Lab, tmp_path: Path) -> None:
    farm = remote_farm(tmp_path / "farm.yaml", lab)
    argv = [
        sys.executable,
        "-m",
        "pytest_boardfarm.cli",
        "reset",
        "--hard",
        "--farm",
        str(farm),
        "--board",
        "remote-raw",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "a labgrid place, does the place have a power resource" in done.stdout, done.stdout  # not only farm.yaml
    assert_places_free(lab, "pl-raw")
