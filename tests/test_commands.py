"""Farm commands: argument templates filled per argument, never run through a shell."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from pytest_boardfarm.commands import FIELDS, CommandError, render, run, template_problems


def test_each_argument_is_filled_on_its_own() -> None:
    argv = render(["uhubctl", "-p", "{port}", "--label={name}"], {"port": "/dev/tty USB0", "name": "desk"})
    assert argv == ["uhubctl", "-p", "/dev/tty USB0", "--label=desk"]


def test_a_hostile_value_stays_one_argument(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    hostile = f"x; touch {marker}; echo $(touch {marker})"
    result = run([sys.executable, "-c", "import sys; print(sys.argv[1:])", "{name}"], {"name": hostile}, timeout=10)
    assert result.output == repr([hostile])
    assert not marker.exists()


def test_unknown_field_is_an_error_not_a_guess() -> None:
    with pytest.raises(CommandError, match=r"unknown field \{prot\}; known: \{port\}"):
        render(["reset", "{prot}"], {"port": "/dev/ttyACM0"})


@pytest.mark.parametrize(
    ("arg", "problem"),
    [
        ("{port.__class__}", r"unknown field \{port.__class__\}"),
        ("{port[0]}", r"unknown field \{port\[0\]\}"),
        ("{port!r}", r"\{port!r\}: only a plain \{port\} is allowed"),
        ("{port:>10}", r"\{port:>10\}: only a plain \{port\} is allowed"),
        ("{}", r"unknown field \{\}"),
        ("{port", r"argument '\{port': expected '\}' before end of string"),
    ],
)
def test_only_plain_fields_are_filled_in(arg: str, problem: str) -> None:
    with pytest.raises(CommandError, match=problem):
        render(["reset", arg], {"port": "/dev/ttyACM0"})


def test_template_problems_are_all_listed() -> None:
    assert template_problems(["{a}", "{b}", "{{literal}}", "{port}"], FIELDS) == [
        "unknown field {a}; known: {name}, {port}, {serial_number}, {platform}",
        "unknown field {b}; known: {name}, {port}, {serial_number}, {platform}",
    ]


def test_failures_and_timeouts_are_reported() -> None:
    with pytest.raises(CommandError, match="exited with 3: boom"):
        run([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], {}, timeout=10)
    with pytest.raises(CommandError, match="did not finish within 0.5s"):
        run([sys.executable, "-c", "import time; time.sleep(5)"], {}, timeout=0.5)
    with pytest.raises(CommandError, match="command not found: no-such-flasher"):
        run(["no-such-flasher", "{port}"], {"port": "p"}, timeout=5)


def test_output_that_is_not_text_or_is_huge_is_kept_short() -> None:
    # uhubctl, a flasher or a relay script may print anything: a command that worked did work.
    script = "import sys; sys.stdout.buffer.write(b'\\x82\\xff' * 2_000_000 + b'\\nreset done')"
    result = run([sys.executable, "-c", script], {}, timeout=30)
    assert result.output.endswith("reset done")
    assert len(result.output) <= 4096


def test_a_command_that_leaves_a_background_process_is_done_when_it_exits(tmp_path: Path) -> None:
    # A wrapper script that starts a helper in the background: the helper keeps the
    # command's output open, but the command itself has finished.
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    try:
        run(["sh", "-c", f"sleep 20 & echo $! > {pid_file}"], {}, timeout=10)
        assert time.monotonic() - started < 8  # bound: did not wait for the helper
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)


def test_a_command_that_times_out_leaves_no_process_behind(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(CommandError, match="did not finish"):
        run(["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], {}, timeout=1)
    pid = int(pid_file.read_text())
    for _ in range(50):
        if _gone(pid):
            break
        time.sleep(0.1)
    assert _gone(pid), "the command's own child outlived it"


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"  # a zombie waiting for init is gone
    except OSError:
        return True
