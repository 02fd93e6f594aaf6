"""Flashing: firmware images built from Debian's micro:bit firmware, flashed,
skipped, verified and rolled back on emulated boards (pytest in a subprocess)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_boardfarm import cli, connect, hexfile
from pytest_boardfarm.emulator import FIRMWARE, MicrobitEmulator, check_installed
from pytest_boardfarm.inventory import FarmConfigError, load_farm, parse_farm
from pytest_boardfarm.pool import BoardPool, BoardUnavailable

from .procs import assert_no_emulators, marked, signal_when
from .ptyrelay import PtyRelay
from .test_plugin import outcomes, run

SUITE = """\
def test_runs_the_new_image(board):
    assert board.eval("APP_VERSION") == 7
"""


def write_images(directory: Path) -> dict[str, Path]:
    """app7.hex (sets APP_VERSION = 7), app6.hex, good.hex (plain Debian), bad.hex (runtime zeroed)."""
    check_installed()
    original = FIRMWARE.read_text()
    images = {
        "app7": hexfile.embed_script(original, "APP_VERSION = 7\n"),
        "app6": hexfile.embed_script(original, "APP_VERSION = 6\n"),
        "good": original,
        "bad": hexfile.corrupt_runtime(original),
    }
    paths = {}
    for name, text in images.items():
        paths[name] = directory / f"{name}.hex"
        paths[name].write_text(text)
    return paths


# -- images -----------------------------------------------------------------------


def test_embedded_script_round_trips_with_valid_records() -> None:
    original = FIRMWARE.read_text()
    image = hexfile.embed_script(original, "x = 1\n")
    records = hexfile.parse(image)  # every checksum and length checked
    assert hexfile.embedded_script(image) == b"x = 1\n"
    assert hexfile.embedded_script(original) is None
    lines = image.splitlines()
    assert lines[-4:] == original.splitlines()[-4:]  # the UICR and end records stay last
    mem = hexfile.memory(records)
    assert mem[0x3E000][:4] == b"MP\x06\x00"
    assert all(len(mem[a]) == 16 for a in mem if a >= 0x3E000 and a < 0x40000)


def test_hex_errors_are_refused() -> None:
    with pytest.raises(hexfile.HexError, match="bad checksum"):
        hexfile.parse(":020000040003F8\n")
    with pytest.raises(hexfile.HexError, match="no :020000041000EA"):
        hexfile.embed_script(":00000001FF\n", "x = 1")
    with pytest.raises(hexfile.HexError, match="already holds a script"):
        hexfile.embed_script(hexfile.embed_script(FIRMWARE.read_text(), "a = 1"), "b = 2")
    with pytest.raises(hexfile.HexError, match="at most"):
        hexfile.embed_script(FIRMWARE.read_text(), "#" * 9000)


def test_the_emulator_runs_the_embedded_script_at_boot(tmp_path: Path) -> None:
    images = write_images(tmp_path)
    with MicrobitEmulator(firmware=images["app7"]) as emu, connect(emu.url, timeout=5) as board:
        assert board.eval("APP_VERSION") == 7
    with pytest.raises(Exception, match="could not start"):
        MicrobitEmulator(firmware=images["bad"]).start(timeout=2)


def test_a_slow_boot_script_runs_to_its_end_before_the_board_is_ready(tmp_path: Path) -> None:
    """The start waits for the boot's prompt: its raw REPL Ctrl-C never cuts a boot script
    short (under load, it once did, and a flashed image's check saw no APP_VERSION)."""
    slow = tmp_path / "slow.hex"
    script = "import microbit\nmicrobit.sleep(400)\nAPP_VERSION = 7\n"
    slow.write_text(hexfile.embed_script(FIRMWARE.read_text(), script))
    for _ in range(3):
        with MicrobitEmulator(firmware=slow) as emu, connect(emu.url, timeout=5) as board:
            assert board.eval("APP_VERSION") == 7


def test_a_boot_script_that_prints_the_prompt_still_runs_to_its_end(tmp_path: Path) -> None:
    """'>>> ' in a boot script's own output is not the REPL's prompt: the start waited
    for it alone, and its Ctrl-C cut the script short (no APP_VERSION)."""
    chatty = tmp_path / "chatty.hex"
    script = "print('>>> starting')\nimport microbit\nmicrobit.sleep(300)\nAPP_VERSION = 7\n"
    chatty.write_text(hexfile.embed_script(FIRMWARE.read_text(), script))
    with MicrobitEmulator(firmware=chatty) as emu, connect(emu.url, timeout=5) as board:
        assert board.eval("APP_VERSION") == 7


def test_an_image_whose_path_has_a_comma_starts(tmp_path: Path) -> None:
    """QEMU's -device options are comma-separated: 'app,v2.hex' was cut at the comma."""
    image = tmp_path / "app,v2.hex"
    image.write_text(hexfile.embed_script(FIRMWARE.read_text(), "APP_VERSION = 2\n"))
    with MicrobitEmulator(firmware=image) as emu, connect(emu.url, timeout=5) as board:
        assert board.eval("APP_VERSION") == 2


def test_a_boot_script_that_never_ends_is_interrupted_by_the_start(tmp_path: Path) -> None:
    forever = tmp_path / "forever.hex"
    forever.write_text(hexfile.embed_script(FIRMWARE.read_text(), "n = 0\nwhile True:\n    n += 1\n"))
    started = time.monotonic()
    with MicrobitEmulator(firmware=forever) as emu, connect(emu.url, timeout=5) as board:
        assert board.eval("n") > 0
    assert time.monotonic() - started < 15


# -- farm.yaml -------------------------------------------------------------------------


def test_firmware_in_farm_yaml(tmp_path: Path) -> None:
    text = """\
defaults:
  firmware:
    image: build/firmware.hex
    version: 'v1\\.9\\.2'
    check: 'APP_VERSION == 7'
    fallback: images/known-good.hex
boards:
  - name: lab-esp32
    port: /dev/ttyUSB0
    flash: [esptool.py, --port, '{port}', write_flash, '0x1000', '{image}']
  - name: sim-1
    emulator: microbit
    firmware: {image: other.hex}
"""
    farm = parse_farm(text, str(tmp_path / "farm.yaml"))
    lab, sim = farm.boards
    assert lab.firmware is not None and sim.firmware is not None
    assert lab.firmware.image == tmp_path / "build" / "firmware.hex"
    assert lab.firmware.fallback == tmp_path / "images" / "known-good.hex"
    assert (lab.firmware.version, lab.firmware.check) == ("v1\\.9\\.2", "APP_VERSION == 7")
    assert sim.firmware.image == tmp_path / "other.hex" and sim.firmware.check is None  # a board's own wins


def test_firmware_errors_name_file_line_and_key() -> None:
    text = """\
boards:
  - name: a
    port: /dev/ttyUSB0
    flash: [flasher, '{image}', '{imgae}']
    firmware:
      image: x.hex
      version: 'v1.(('
      check: 'APP_VERSION =='
      fallbak: y.hex
  - name: b
    port: /dev/ttyUSB1
    firmware: {version: 'v1'}
  - name: c
    port: /dev/ttyUSB2
    firmware: {image: x.hex}
"""
    with pytest.raises(FarmConfigError) as info:
        parse_farm(text, "farm.yaml")
    problems = "\n".join(info.value.problems)
    assert "farm.yaml:4: boards[0].flash: unknown field {imgae}" in problems
    assert "farm.yaml:7: boards[0].firmware.version: not a valid regular expression" in problems
    assert "farm.yaml:8: boards[0].firmware.check: not a Python expression" in problems
    assert "farm.yaml:9: boards[0].firmware.fallbak: unknown key (did you mean 'fallback'?)" in problems
    assert "farm.yaml:12: boards[1].firmware.image: missing" in problems
    assert "farm.yaml:13: boards[2] (c).flash: missing; a board with 'firmware' needs a 'flash' command" in problems


# -- emulated boards, end to end --------------------------------------------------------


def emulated_farm(tmp_path: Path, boards: dict[str, tuple[str, str | None]]) -> Path:
    """farm.yaml with one emulated board per name: (image, fallback)."""
    lines = [f"locks: {{dir: {tmp_path / 'locks'}}}", "boards:"]
    for name, (image, fallback) in boards.items():
        lines += [f"  - name: {name}", "    emulator: microbit", "    timeout: 3", "    firmware:"]
        lines += [f"      image: {image}.hex", "      check: 'APP_VERSION == 7'", "      version: 'v1\\.9\\.2'"]
        if fallback:
            lines.append(f"      fallback: {fallback}.hex")
    path = tmp_path / "farm.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def junit_boards(path: Path) -> dict[str, dict[str, str]]:
    root = ET.parse(path).getroot()
    return {
        suite.get("name", ""): {p.get("name", ""): p.get("value", "") for p in suite.iter("property")}
        for suite in root.iter("testsuite")
    }


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one-process", "xdist"])
def test_four_emulated_boards_flash_in_parallel_and_verify(pytester: pytest.Pytester, workers: list[str]) -> None:
    write_images(pytester.path)
    farm = emulated_farm(pytester.path, {f"sim-{i}": ("app7", None) for i in range(1, 5)})
    pytester.makepyfile(test_app=SUITE)
    args = ("--farm", str(farm), "--farm-flash", "--farm-reset", "never", "--farm-junit", "j.xml", *workers)
    result = run(pytester, *args)
    assert set(outcomes(result).values()) == {"PASSED"}, result.stdout.str()
    assert len(outcomes(result)) == 4
    boards = junit_boards(pytester.path / "j.xml")
    for name in ("sim-1", "sim-2", "sim-3", "sim-4"):
        assert boards[name]["flash"] == "flashed"
        assert boards[name]["health"] == "ok"  # the flashed emulator kept running: no recovery needed
        assert boards[name]["image"].startswith("app7.hex (")
    result.stdout.fnmatch_lines(["*board*health*image*", "sim-1 *app7.hex (*), flashed"])


@pytest.mark.parametrize("setting", ["true", "false"])
def test_the_ini_option_flashes_as_the_command_line_does(pytester: pytest.Pytester, setting: str) -> None:
    """README: --farm-flash, "also ini boardfarm_flash = true"."""
    write_images(pytester.path)
    farm = emulated_farm(pytester.path, {"sim-1": ("app7", None)})
    pytester.makeini(f"[pytest]\nboardfarm_flash = {setting}\n")
    pytester.makepyfile(test_app=SUITE)
    result = run(pytester, "--farm", str(farm), "--farm-reset", "never", "--farm-junit", "j.xml")
    flashed = setting == "true"
    assert outcomes(result) == {"test_app.py::test_runs_the_new_image[sim-1]": "PASSED" if flashed else "FAILED"}
    assert (junit_boards(pytester.path / "j.xml")["sim-1"].get("flash") == "flashed") == flashed


def test_a_corrupt_image_rolls_back_or_quarantines(pytester: pytest.Pytester) -> None:
    write_images(pytester.path)
    farm = emulated_farm(
        pytester.path,
        {
            "sim-ok": ("app7", "good"),
            "sim-rollback": ("bad", "good"),
            "sim-lost": ("bad", "bad"),
            "sim-wrong": ("app6", "good"),
        },
    )
    pytester.makepyfile(test_app=SUITE)
    with marked() as mark:
        result = run(pytester, "--farm", str(farm), "--farm-flash", "--farm-reset", "never", "--farm-junit", "j.xml")
    assert_no_emulators(mark)  # failed boots and rolled-back boards leave no QEMU behind
    found = outcomes(result)
    assert found["test_app.py::test_runs_the_new_image[sim-ok]"] == "PASSED"
    for name in ("sim-rollback", "sim-lost", "sim-wrong"):
        assert found[f"test_app.py::test_runs_the_new_image[{name}]"] == "ERROR"
    out = result.stdout.str()
    assert "board sim-rollback unavailable: not tested: image bad.hex (" in out
    assert "did not answer" in out or "could not start" in out
    assert "the board runs good.hex (" in out
    assert "board sim-wrong unavailable: not tested: image app6.hex (" in out
    assert "check 'APP_VERSION == 7' is false on the board" in out
    assert "board sim-lost quarantined: flashing failed: image bad.hex (" in out
    assert "the fallback bad.hex (" in out and "failed too" in out
    boards = junit_boards(pytester.path / "j.xml")
    assert boards["sim-rollback"]["flash"] == "rolled back"
    assert boards["sim-rollback"]["image"].startswith("good.hex (")
    assert boards["sim-lost"]["flash"] == "failed"
    result.stdout.fnmatch_lines(
        [
            "sim-lost * quarantined: flashing failed *unknown firmware, failed",
            "sim-rollback * not tested: image failed *good.hex (*), rolled back",
        ]
    )


# -- the flash: command path: a board whose port goes away and comes back late -----------


class ReflashableBoard:
    """A board on a tty whose ``flash:`` command restarts its emulator on the image,
    with the port gone while it flashes and back ``late`` seconds after the flasher exits."""

    def __init__(self, directory: Path, image: Path, late: float) -> None:
        self.late = late
        self.emulator = MicrobitEmulator(firmware=image).start()
        self.relay = PtyRelay(self.emulator.url, link=directory / "ttyFLASH")
        self.socket_path = str(directory / "flasher.sock")
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(self.socket_path)
        self.server.listen()
        self.flashes: list[str] = []
        self.timers: list[threading.Timer] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                image = conn.makefile().readline().strip()
                self.flashes.append(Path(image).name)
                self.relay.vanish()
                port = self.emulator.port
                self.emulator.stop()
                self.emulator = MicrobitEmulator(firmware=Path(image), port=port)
                try:
                    self.emulator.start(timeout=3)
                    answer = "ok"
                except Exception as exc:
                    answer = f"failed: {exc}"
                conn.sendall(answer.encode() + b"\n")
            if answer == "ok":
                timer = threading.Timer(self.late, self.relay.come_back)
                self.timers.append(timer)
                timer.start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self.server.close()
        self.thread.join(timeout=10)
        for timer in self.timers:
            timer.cancel()
        self.relay.close()
        self.emulator.stop()


@pytest.fixture
def reflashable(tmp_path: Path) -> Iterator[ReflashableBoard]:
    images = write_images(tmp_path)
    board = ReflashableBoard(tmp_path, images["good"], late=1.5)
    yield board
    board.close()


def test_flash_command_with_a_late_port_then_skip(
    pytester: pytest.Pytester, reflashable: ReflashableBoard, capsys: pytest.CaptureFixture[str]
) -> None:
    images = write_images(pytester.path)
    farm = pytester.path / "farm.yaml"
    farm.write_text(
        f"""\
locks: {{dir: {pytester.path / "locks"}}}
boards:
  - name: lab-1
    port: {reflashable.relay.path}
    timeout: 3
    flash: [{sys.executable}, {Path(__file__).parent / "flasher.py"}, {reflashable.socket_path}, '{{image}}']
    firmware:
      image: app7.hex
      check: 'APP_VERSION == 7'
      version: 'v1\\.9\\.2'
"""
    )
    pytester.makepyfile(test_app=SUITE)
    started = time.monotonic()
    result = run(pytester, "--farm", str(farm), "--farm-flash", "--farm-reset", "never", "--farm-junit", "j.xml")
    assert outcomes(result) == {"test_app.py::test_runs_the_new_image[lab-1]": "PASSED"}, result.stdout.str()
    assert reflashable.flashes == ["app7.hex"]
    assert junit_boards(pytester.path / "j.xml")["lab-1"]["flash"] == "flashed"
    assert junit_boards(pytester.path / "j.xml")["lab-1"]["health"] == "ok"
    assert time.monotonic() - started < 60

    # the same run again: the board proves it runs app7.hex (marker + version): no flash
    pytester.makepyfile(test_app="def test_again(board):\n    assert board.eval('1') == 1\n")
    result = run(pytester, "--farm", str(farm), "--farm-flash", "--farm-junit", "j.xml")
    assert outcomes(result) == {"test_app.py::test_again[lab-1]": "PASSED"}, result.stdout.str()
    assert reflashable.flashes == ["app7.hex"]
    assert junit_boards(pytester.path / "j.xml")["lab-1"]["flash"] == "skipped"

    # boardfarm flash skips it too; --force flashes it anyway (README: what the marker cannot see)
    assert cli.main(["flash", "--farm", str(farm)]) == 0
    assert reflashable.flashes == ["app7.hex"]
    assert re.search(r"^lab-1 +app7\.hex \(\w{8}\) +skipped ", capsys.readouterr().out, re.M)
    assert cli.main(["flash", "--farm", str(farm), "--force"]) == 0
    assert reflashable.flashes == ["app7.hex", "app7.hex"]
    assert re.search(r"^lab-1 +app7\.hex \(\w{8}\) +flashed ", capsys.readouterr().out, re.M)
    del images


# -- the flasher command fails: no emulator needed ------------------------------------------


def command_farm(tmp_path: Path, flash: str, fallback: bool) -> Path:
    (tmp_path / "app.hex").write_text(":00000001FF\n")
    (tmp_path / "known-good.hex").write_text(":00000001FF\n")
    path = tmp_path / "farm.yaml"
    path.write_text(
        f"""\
locks: {{dir: {tmp_path / "locks"}}}
boards:
  - name: lab-1
    port: {tmp_path / "ttyNONE"}
    timeout: 1
    flash: {flash}
    firmware:
      image: app.hex
{"      fallback: known-good.hex" if fallback else ""}
"""
    )
    return path


def test_a_flasher_that_fails_quarantines_the_board(tmp_path: Path) -> None:
    farm = load_farm(command_farm(tmp_path, f"[{sys.executable}, -c, 'import sys; sys.exit(3)', '{{image}}']", True))
    pool = BoardPool(farm, flash=True)
    with pytest.raises(BoardUnavailable) as info:
        pool.acquire("lab-1")
    message = str(info.value)
    assert message.startswith("board lab-1 quarantined: flashing failed: image app.hex (")
    assert "app.hex'] exited with 3" in message
    assert "the fallback known-good.hex (" in message and "failed too" in message
    assert "the board runs unknown firmware" in message
    assert pool.flashed["lab-1"].result == "failed"
    assert "lab-1" not in pool.held


def test_a_flasher_that_hangs_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pytest_boardfarm.pool.FLASH_SECONDS", 0.5)
    farm = load_farm(
        command_farm(tmp_path, f"[{sys.executable}, -c, 'import time; time.sleep(30)', '{{image}}']", False)
    )
    pool = BoardPool(farm, flash=True)
    started = time.monotonic()
    with pytest.raises(BoardUnavailable, match=r"did not finish within 0.5s.*unknown firmware \(no fallback image\)"):
        pool.acquire("lab-1")
    assert time.monotonic() - started < 10


FLASHER = """
import os, sys, time
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
time.sleep(120)
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"])
def test_boardfarm_flash_stops_its_flasher_at_once_on_a_signal(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    """The flasher runs in a session of its own, waited for in a board's thread: Ctrl-C (or a
    cancelled CI job's SIGTERM) reached only the main thread, and the command waited for the
    flasher to end or reach its deadline (minutes)."""
    script, pidfile = tmp_path / "flasher.py", tmp_path / "flasher.pid"
    script.write_text(FLASHER)
    farm = command_farm(tmp_path, f"[{sys.executable}, {script}, {pidfile}, '{{image}}']", False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_boardfarm.cli", "flash", "--farm", str(farm)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = signal_when(proc, lambda: pidfile.exists() and pidfile.read_text() != "", sig)  # in the flasher
    assert proc.returncode == code, out + err  # within 20 s: far less than the flasher's 120 s
    flasher = int(pidfile.read_text())
    for _ in range(100):  # its group was killed: gone once its parent has reaped it
        if not os.path.exists(f"/proc/{flasher}"):
            break
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{flasher}")


def test_boardfarm_flash_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_images(tmp_path)
    farm = emulated_farm(tmp_path, {"sim-ok": ("app7", None), "sim-rollback": ("app6", "good")})
    with marked() as mark:
        assert cli.main(["flash", "--farm", str(farm)]) == 1
    assert_no_emulators(mark)
    out = capsys.readouterr().out
    assert "sim-ok: flashing app7.hex (" in out and "sim-rollback: rolling back to good.hex (" in out
    table = out[out.index("\nboard ") + 1 :].splitlines()
    assert re.match(r"board +image +result +seconds$", table[0])
    assert re.match(r"sim-ok +app7\.hex \(\w{8}\) +flashed +\d+\.\d$", table[1])
    assert re.match(r"sim-rollback +good\.hex \(\w{8}\) +rolled back +\d+\.\d$", table[2])
    assert table[3].startswith("1 of 2 boards ok in ")
    assert cli.main(["flash", "--farm", str(farm), "--board", "sim-ok"]) == 0
