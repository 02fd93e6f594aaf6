"""The README's examples, run as a user copies them, on emulated boards.

The README is a contract: its code blocks must run and the output it shows must be
what the commands print now. Blocks are read from the README itself, so an edit
there that breaks an example fails here.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_boardfarm.cli import build_parser
from pytest_boardfarm.emulator import MicrobitEmulator
from pytest_boardfarm.emulators import EmulatorError, WebAssemblyBoard, start_many
from pytest_boardfarm.inventory import parse_farm

from .test_plugin import outcomes, run

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BOARDFARM = [sys.executable, "-m", "pytest_boardfarm.cli"]


def section(title: str) -> str:
    """The text under a ``## title`` heading, up to the next one."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def blocks(title: str, lang: str = "") -> list[str]:
    """The fenced code blocks of a section, in order, for one language (``""``: unmarked)."""
    return re.findall(rf"^```{lang}\n(.*?)^```$", section(title), re.M | re.S)


def shown(title: str, command: str) -> list[str]:
    """The lines the README shows a ``$ command`` printing, up to the next prompt."""
    for block in blocks(title):
        lines = block.splitlines()
        if f"$ {command}" in lines:
            after = lines[lines.index(f"$ {command}") + 1 :]
            return after[: next((i for i, line in enumerate(after) if line.startswith("$ ")), len(after))]
    raise AssertionError(f"the README shows no '$ {command}' under {title!r}")


# -- host-side examples -------------------------------------------------------------------------

RADIO_FARM = """\
locks: {{dir: {locks}}}
boards:
  - {{name: sim-1, emulator: microbit, tags: [radio]}}
  - {{name: sim-2, emulator: microbit, tags: [radio]}}
"""


def test_the_host_side_examples_run(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """Your first test, Waiting for what a board prints, Tests with several boards."""
    (pytester.path / "farm.yaml").write_text(RADIO_FARM.format(locks=tmp_path / "locks"))
    (first,) = blocks("Your first test", "python")
    waiting = blocks("Waiting for what a board prints", "python")
    (several,) = blocks("Tests with several boards", "python")
    pytester.makepyfile(test_first=first, test_waiting="\n\n".join(waiting), test_several=several)
    result = run(pytester, "--farm", "farm.yaml", "-p", "no:randomly")
    got = outcomes(result)
    text = result.stdout.str()
    for board in ("sim-1", "sim-2"):
        assert got[f"test_first.py::test_hello[{board}]"] == "PASSED", text
        assert got[f"test_waiting.py::test_main_py_prints_at_boot[{board}]"] == "PASSED", text
        assert got[f"test_waiting.py::test_ticks[{board}]"] == "PASSED", text
    assert got["test_first.py::test_wifi_scan[no-board]"] == "SKIPPED"  # no rp2040 with wifi here
    assert "no board matches platform='rp2040', tags=['wifi']" in text
    # two boards, two roles, rotate: each board plays each role once
    assert got["test_several.py::test_token[sim-1+sim-2]"] == "PASSED", text
    assert got["test_several.py::test_token[sim-2+sim-1]"] == "PASSED", text
    assert len(got) == 9
    # what the board printed outside any exec is in the test's serial log too, from the boot's first line
    log = (
        pytester.path
        / "boardfarm-results"
        / "serial-logs"
        / "sim-1"
        / "test_waiting__test_main_py_prints_at_boot[sim-1].log"
    )
    boot = log.read_text()
    assert "ready" in boot and "MicroPython v1.9.2" in boot


# -- tests that run on the board ----------------------------------------------------------------

PICO_FARM = """\
locks: {{dir: {locks}}}
boards:
  - {{name: desk-pico, emulator: microbit, platform: rp2040, tags: [wifi], deploy: lib}}
"""


def test_the_device_test_example_runs_and_reports_as_shown(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The ini block and tests/device/test_math.py, on a micro:bit that calls itself a wifi Pico."""
    (pytester.path / "farm.yaml").write_text(PICO_FARM.format(locks=tmp_path / "locks"))
    (pytester.path / "lib").mkdir()
    (pytester.path / "lib" / "mymath.py").write_text("def add(a, b):\n    return a + b\n")
    title = "Tests that run on the board"
    (ini,) = blocks(title, "toml")
    (pytester.path / "pyproject.toml").write_text(ini)
    (module,) = blocks(title, "python")
    path = module.splitlines()[0].removeprefix("# ").split(":")[0]
    assert path == "tests/device/test_math.py"
    (pytester.path / path).parent.mkdir(parents=True)
    (pytester.path / path).write_text(module)
    result = run(pytester, "--farm", "farm.yaml", "-rs")
    got = outcomes(result)
    text = result.stdout.str()
    add_line = shown_plain(title)[0]  # tests/device/test_math.py::test_add[desk-pico] PASSED
    assert any(line.startswith(f"{add_line} ") for line in result.outlines), text
    # the micro:bit has no network module: the example's SkipTest says so
    assert got["tests/device/test_math.py::test_network[desk-pico]"] == "SKIPPED"
    assert "no network module on this firmware" in text


def shown_plain(title: str) -> list[str]:
    """The lines of the first unmarked block that shows pytest -v lines."""
    for block in blocks(title):
        if "::" in block and "PASSED" in block:
            return block.splitlines()
    raise AssertionError(f"no pytest -v lines shown under {title!r}")


def test_the_runner_sent_to_each_board_is_as_small_as_the_readme_says() -> None:
    from pytest_boardfarm import helper_sources

    assert "a small runner (about 0.7 KB of\nsource" in README
    assert 500 < len(helper_sources.source("bf_devtest.py")) < 900


# -- the boardfarm command's output -------------------------------------------------------------

BAD_FARM = """\
boards:
  - {name: desk-1, port: /dev/ttyACM0, baudrate: fast}
  - {name: desk-2}
  - {name: desk-1, port: /dev/ttyACM1, rest: uhubctl}
"""


def test_boardfarm_check_prints_what_the_readme_shows(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(BAD_FARM)
    (tmp_path / "farm.yaml").write_text(
        "boards:\n  - {name: a, port: /dev/ttyACM0}\n  - {name: b, port: /dev/ttyACM1}\n  - {name: c, emulator: microbit}\n"
    )
    title = "The `boardfarm` command"
    done = subprocess.run([*BOARDFARM, "check", "bad.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout.splitlines() == shown(title, "boardfarm check bad.yaml")
    command = next(line[2:] for line in section(title).splitlines() if line.endswith(" boardfarm check"))
    env_setting, _, _ = command.partition(" boardfarm")
    name, _, value = env_setting.partition("=")
    done = subprocess.run(
        [*BOARDFARM, "check"], cwd=tmp_path, capture_output=True, text=True, timeout=60, env={**os.environ, name: value}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == shown(title, command)


def command_help() -> dict[str, str]:
    """Each subcommand's --help, as the boardfarm command prints it (joined into one line)."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: " ".join(sub.format_help().split()) for name, sub in commands.choices.items()}


def test_the_commands_lock_timeout_defaults_are_the_readmes() -> None:
    text = " ".join(section("The `boardfarm` command").split())
    assert "waiting up to `--lock-timeout` seconds, 10 by default (60 for `flash`)" in text
    helps = command_help()
    for command in ("exec", "run", "eval", "deploy", "reset", "monitor", "repl"):
        assert "holds (default 10)" in helps[command], command
    assert "holds (default 60)" in helps["flash"]


def test_the_code_commands_timeout_default_is_the_readmes() -> None:
    assert "(`--timeout`, 30 s by default, interrupts code that runs longer)" in " ".join(
        section("The `boardfarm` command").split()
    )
    for command in ("exec", "run", "eval"):
        assert "interrupt code still running after this long (default 30)" in command_help()[command]


def test_the_commands_that_take_json_are_the_readmes() -> None:
    text = " ".join(section("The `boardfarm` command").split())
    listed = re.search(r"`--json` gives one document \(([^)]*)\)", text)
    assert listed, "the README says which commands take --json"
    taking = {name for name, text in command_help().items() if "--json" in text}
    assert taking == set(re.findall(r"`(\w+)`", listed.group(1)))


@pytest.fixture(scope="module")
def ci_boards() -> Iterator[list[MicrobitEmulator]]:
    """The README's ``mb-1`` and ``mb-2``: two emulated micro:bits behind ``socket://`` ports."""
    started = start_many(2)
    yield started
    for board in started:
        board.stop()


def test_the_boardfarm_commands_print_what_the_readme_shows(tmp_path: Path, ci_boards: list[MicrobitEmulator]) -> None:
    (tmp_path / "farm.yaml").write_text(
        f"locks: {{dir: {tmp_path / 'locks'}}}\nboards:\n"
        + "".join(
            f"  - {{name: mb-{i}, port: '{b.url}', platform: microbit, tags: [ci]}}\n"
            for i, b in enumerate(ci_boards, 1)
        )
    )
    title = "The `boardfarm` command"

    def boardfarm(command: str) -> list[str]:
        """Run a README command line (``boardfarm ...``) here."""
        done = subprocess.run(
            [*BOARDFARM, *shlex.split(command.removeprefix("boardfarm "))],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "BOARDFARM_INVENTORY": "farm.yaml"},
        )
        return done.stdout.splitlines()

    def columns(line: str) -> list[str]:
        return re.split(r"\s{2,}", line.strip())

    probe = shown(title, "boardfarm list --probe --board mb-2")
    got = boardfarm("boardfarm list --probe --board mb-2")
    assert columns(got[0]) == columns(probe[0])  # board, platform, tags, port, state, firmware, unique id, free
    assert columns(got[1])[:3] == columns(probe[1])[:3] and columns(got[1])[4:7] == columns(probe[1])[4:7]

    hello = shown(title, "cat hello.py")
    (tmp_path / "hello.py").write_text("\n".join(hello) + "\n")
    assert boardfarm("boardfarm run --board-tag ci hello.py") == shown(title, "boardfarm run --board-tag ci hello.py")

    command = readme_command(title, "boardfarm exec")
    locked_or_not = shown(title, command)
    assert boardfarm(command.replace(" --lock-timeout 2", ""))[1] == locked_or_not[1]  # mb-2: micro:bit with nRF51822
    memory = boardfarm(readme_command(title, "boardfarm eval"))
    assert [line.split(":")[0] for line in memory] == ["mb-1", "mb-2"]
    assert all(
        re.fullmatch(r"mb-\d: \d+", line) for line in memory + shown(title, readme_command(title, "boardfarm eval"))
    )

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("import config\n")
    (tmp_path / "app" / "config.py").write_text("RATE = 5\n")
    want = shown(title, "boardfarm deploy app --board-tag ci")
    got = boardfarm("boardfarm deploy app --board-tag ci")
    assert sorted(got[:4]) == sorted(want[:4])
    assert columns(got[4]) == columns(want[4]) and [columns(line)[:2] for line in got[5:7]] == [
        columns(line)[:2] for line in want[5:7]
    ]
    assert re.fullmatch(r"2 of 2 boards ok in [\d.]+s", got[-1]) and re.fullmatch(
        r"2 of 2 boards ok in [\d.]+s", want[-1]
    )


def readme_command(title: str, start: str) -> str:
    """The first ``$ start...`` command line the README shows under a section."""
    return next(line[2:] for line in section(title).splitlines() if line.startswith(f"$ {start}"))


BROKEN_FARM = """\
boards:
  - name: sim-1
    prot: /dev/ttyACM0
    emulator: microbit
  - name: sim-2
    emulator: microbit
    tags: [fast]
    timeout: 5
  - name: sim-1
    emulator: microbit
"""


def test_a_broken_farm_file_is_reported_as_the_readme_shows(pytester: pytest.Pytester) -> None:
    (pytester.path / "farm.yaml").write_text(BROKEN_FARM)
    pytester.makepyfile(test_x="def test_x(board):\n    pass\n")
    result = run(pytester, "--farm", "farm.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (want,) = [b for b in blocks("farm.yaml reference") if b.startswith("ERROR: invalid farm inventory:")]
    assert want in result.stderr.str()


# -- the board API, without pytest --------------------------------------------------------------

_CLAIM = re.compile(r"^(?P<indent>\s+)(?P<expr>board\.\S.*?)  # -> (?P<value>.+?)(?: \(.*\))?$")


def with_claims_asserted(snippet: str, url: str) -> str:
    """The snippet on ``url``, each ``board.x(...)  # -> value`` line turned into an assert."""
    lines = []
    for line in snippet.replace('"/dev/ttyACM0"', repr(url)).splitlines():
        claim = _CLAIM.match(line)
        lines.append(f"{claim['indent']}assert {claim['expr']} == {claim['value']}" if claim else line)
    return "\n".join(lines) + "\n"


def test_the_board_api_example_runs_as_its_comments_say(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On MicroPython 1.27 (WebAssembly): the micro:bit's flat file system has no mkdir."""
    try:
        WebAssemblyBoard().check_installed()
    except EmulatorError as exc:
        pytest.skip(str(exc))
    (snippet,) = [b for b in blocks("The board API", "python") if "connect(" in b]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "selftest.py").write_text("assert 1 + 1 == 2\nprint('selftest ok')\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('app')\n")
    with WebAssemblyBoard() as wasm:
        code = with_claims_asserted(snippet, wasm.url)
        assert code.count("assert ") == 3  # exec, eval, get
        exec(compile(code, "README.md (The board API)", "exec"), {})


# -- farm.yaml examples -------------------------------------------------------------------------


def test_every_farm_file_in_the_readme_is_valid() -> None:
    farms = [b for b in re.findall(r"^```yaml\n(.*?)^```$", README, re.M | re.S) if re.search(r"^boards:", b, re.M)]
    assert len(farms) == 3  # Your first test, A farm on several hosts, Flashing
    for text in farms:
        assert parse_farm(text, "farm.yaml").boards


def test_every_flasher_template_in_the_readme_is_a_valid_flash_command() -> None:
    (templates,) = [b for b in blocks("Flashing", "yaml") if b.startswith("# ESP32")]
    commands = [line for line in templates.splitlines() if line.startswith("flash: ")]
    assert len(commands) == 5
    for command in commands:
        farm = f"boards:\n  - name: b\n    port: /dev/ttyACM0\n    {command}\n    firmware: {{image: fw.bin}}\n"
        (board,) = parse_farm(farm, "farm.yaml").boards
        assert board.flash  # its {fields} checked as farm.yaml checks them
