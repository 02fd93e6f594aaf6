"""farm.yaml: every mistake reported at once, with file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_boardfarm.inventory import FarmConfigError, UnknownBoard, load_farm, parse_farm

ROOT = Path(__file__).resolve().parent.parent


def problems(text: str) -> list[str]:
    with pytest.raises(FarmConfigError) as info:
        parse_farm(text, "farm.yaml", Path("/farm"))
    return info.value.problems


def test_example_farm_loads() -> None:
    farm = load_farm(ROOT / "farm.example.yaml")
    assert farm.names == ["sim-1", "sim-2", "sim-3", "sim-4"]
    sim1 = farm.get("sim-1")
    assert sim1.emulator == "microbit" and sim1.platform == "microbit"
    assert sim1.tags == ("display", "fast") and sim1.properties == {"lab": "example"}


def test_every_problem_at_once_with_line_and_key() -> None:
    found = problems(
        """\
boards:
  - name: a
    port: /dev/ttyACM0
    baudrate: fast
  - name: a
    emulator: microbit
  - platform: rp2040
  - name: c
    emulatr: microbit
"""
    )
    assert found == [
        "farm.yaml:4: boards[0].baudrate: expected a positive whole number, got 'fast'",
        "farm.yaml:5: boards[1].name: duplicate board name 'a' (first at farm.yaml:2)",
        "farm.yaml:7: boards[2].name: missing; every board needs a name",
        "farm.yaml:7: boards[2].port: missing; give 'port' (a device or pyserial URL), 'serial_number' or 'emulator'",
        "farm.yaml:8: boards[3] (c).port: missing; give 'port' (a device or pyserial URL), 'serial_number' or 'emulator'",
        "farm.yaml:9: boards[3].emulatr: unknown key (did you mean 'emulator'?)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "boards:\n  - name: x\n    port: p\n    tags: fast\n",
            "farm.yaml:4: boards[0].tags: expected a list of strings",
        ),
        ("boards:\n  - name: x\n    port: p\n    timeout: -1\n", "farm.yaml:4: boards[0].timeout: expected a positive"),
        ("boards:\n  - name: 7\n    port: p\n", "farm.yaml:2: boards[0].name: expected a string, got int 7"),
        ("boards:\n  - name: x\n    emulator: qemu\n", "boards[0].emulator: unknown emulator 'qemu'"),
        ("boards:\n  - name: x\n    emulator: microbit\n    port: p\n", "an emulated board has no 'port'"),
        ("boards: {}\n", "farm.yaml:1: boards: expected a list of boards, got a mapping"),
        ("bords: []\n", "farm.yaml:1: bords: unknown key (did you mean 'boards'?)"),
        ("defaults:\n  name: x\nboards: []\n", "defaults.name: must be set per board"),
        ("boards:\n  - name: x\n    port: p\n    reset: 'a \"b'\n", "boards[0].reset: cannot split command"),
        ("boards:\n  - [x]\n", "farm.yaml:2: boards[0]: expected a mapping, got a list"),
        ("boards:\n  - name: x\n   port: p\n", "farm.yaml:3: not valid YAML"),
        ("", "farm.yaml: the file is empty"),
    ],
)
def test_single_mistakes(text: str, expected: str) -> None:
    assert any(expected in p for p in problems(text)), problems(text)


def test_defaults_are_inherited_and_properties_merged() -> None:
    farm = parse_farm(
        "defaults: {timeout: 3, baudrate: 9600, properties: {lab: x}}\n"
        "boards:\n  - {name: a, port: p, properties: {desk: 2}}\n  - {name: b, port: q, timeout: 5}\n",
        "farm.yaml",
        Path("/farm"),
    )
    a, b = farm.boards
    assert (a.timeout, a.baudrate, a.properties) == (3.0, 9600, {"lab": "x", "desk": "2"})
    assert (b.timeout, b.properties) == (5.0, {"lab": "x"})


def test_command_templates_are_argument_lists() -> None:
    farm = parse_farm(
        "boards:\n  - name: a\n    port: p\n    reset: uhubctl -p '{port}' -a cycle\n"
        "    flash: [esptool.py, --port, '{port}', write_flash, '0x0', '{firmware}']\n",
        "farm.yaml",
        Path("/farm"),
    )
    assert farm.boards[0].reset == ("uhubctl", "-p", "{port}", "-a", "cycle")
    assert farm.boards[0].flash[-1] == "{firmware}"


def test_paths_are_relative_to_the_farm_file(tmp_path: Path) -> None:
    path = tmp_path / "farm.yaml"
    path.write_text("locks: {dir: locks}\nboards:\n  - {name: a, port: p, deploy: app}\n")
    farm = load_farm(path)
    assert farm.lock_dir == tmp_path / "locks" and farm.boards[0].deploy == tmp_path / "app"


def test_unknown_board_names_the_ones_that_exist() -> None:
    farm = parse_farm("boards:\n  - {name: sim-1, port: p}\n  - {name: sim-2, port: q}\n", "f.yaml", Path("/"))
    with pytest.raises(UnknownBoard, match=r"no board named 'sim-3'.*did you mean 'sim-[12]'.*sim-1, sim-2"):
        farm.get("sim-3")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(FarmConfigError, match="cannot read the farm inventory"):
        load_farm(tmp_path / "missing.yaml")


def test_guessing_the_board_from_a_test_id_only_when_unambiguous() -> None:
    from pytest_boardfarm.identity import guess_board

    boards = ["sim-1", "sim-10", "desk", "a", "a-1", "café"]
    assert guess_board("t.py::test_x[sim-1]", boards) == "sim-1"
    assert guess_board("t.py::test_x[sim-10-3]", boards) == "sim-10"
    assert guess_board("t.py::test_x[sim-1-a-b]", boards) == "sim-1"
    assert guess_board("t.py::Test::test_x[desk]", boards) == "desk"
    assert guess_board("t.py::test_x[caf\\xe9-1]", boards) == "café"  # pytest escapes non-ASCII ids
    assert guess_board("t.py::test_x[a-1]", boards) is None  # board a with "1", or board a-1: cannot tell
    assert guess_board("t.py::test_x[a-2]", boards) == "a"
    assert guess_board("t.py::test_plain", boards) is None
    assert guess_board("t.py::test_x[no-board]", boards) is None
    assert guess_board("t.py::test_x[other-sim-1]", boards) is None
