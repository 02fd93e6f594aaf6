"""``boardfarm list / ports / check``: see the farm, the ports present, and whether farm.yaml is valid."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from serial.tools import list_ports

from .cli_support import (
    Command,
    Lines,
    Outcome,
    UsageError,
    add_farm_option,
    add_selection_options,
    load,
    on_boards,
    select,
    table,
)
from .farmfile import find_farm_file, ini_setting
from .inventory import BoardSpec, Farm, FarmConfigError, load_farm
from .pool import Allocated, BoardPool, BoardUnavailable

BY_ID = Path("/dev/serial/by-id")
PROBE_SECONDS = 5.0  # how long --probe waits for a board another run is just handing back


# -- list -------------------------------------------------------------------------------


@dataclass
class BoardRow:
    """One line of ``boardfarm list``. Other sources of boards (remote places) add rows of this shape."""

    name: str
    platform: str
    tags: tuple[str, ...]
    port: str  # where it is now, resolved (device path, by-id -> device, serial number -> device)
    state: str  # free; locked by user@host pid N since T, run R; quarantined: ...; port missing: ...
    source: str = "farm.yaml"
    firmware: str = ""  # --probe
    unique_id: str = ""
    mem_free: int | None = None


RowSource = Callable[[Farm, Sequence[BoardSpec], argparse.Namespace], list[BoardRow]]


def _where(spec: BoardSpec, pool: BoardPool) -> tuple[str, bool]:
    """The board's port as a person wants to read it, and whether it is present."""
    if spec.emulator:
        return f"emulated ({spec.emulator}, started per run)", True
    try:
        device = pool.port_of(spec.name)
    except BoardUnavailable:
        return spec.port or f"serial {spec.serial_number}", False
    if spec.serial_number and not spec.port:
        return f"serial {spec.serial_number} -> {device}", True
    real = os.path.realpath(device) if "://" not in device else device
    return (f"{device} -> {real}" if real != device else device), True


def farm_rows(farm: Farm, specs: Sequence[BoardSpec], args: argparse.Namespace) -> list[BoardRow]:
    """The farm file's boards, each with its port and its state now (and, with --probe, what it runs)."""
    pool = BoardPool(farm, lock_timeout=0, run_id="boardfarm list", deploy=False)
    rows = {}
    for spec in specs:
        if spec.place:
            continue  # a labgrid place: place_rows below asks its coordinator
        port, present = _where(spec, pool)
        lock = pool.lock_of(spec.name)
        state = "free"
        if lock is not None and not lock.is_free():
            holder = lock.holder()
            state = f"locked by {holder.summary() if holder else lock.who()}"
        elif not present:
            state = "port missing"
        rows[spec.name] = BoardRow(spec.name, spec.platform, spec.tags, port, state)
    if args.probe:
        _probe(farm, [s for s in specs if s.name in rows and rows[s.name].state == "free"], rows)
    return list(rows.values())


def _probe(farm: Farm, specs: Sequence[BoardSpec], rows: dict[str, BoardRow]) -> None:
    """Connect to the free boards at once (the pool's bring-up: recovery, then quarantine)."""

    def work(held: Allocated, pool: BoardPool) -> Outcome:
        return Outcome(held.spec.name, True, value=held.info)

    for outcome in on_boards(farm, specs, work, lock_timeout=PROBE_SECONDS, command="list --probe"):
        row = rows[outcome.board]
        if outcome.ok and outcome.value is not None:
            row.firmware, row.unique_id, row.mem_free = (
                outcome.value.firmware,
                outcome.value.unique_id,
                outcome.value.mem_free,
            )
        elif outcome.details.get("quarantined"):
            row.state = "quarantined: " + outcome.error.split(": ", 1)[-1].splitlines()[0]
        else:
            row.state = "unavailable: " + outcome.error.split(": ", 1)[-1].splitlines()[0]


def place_rows(farm: Farm, specs: Sequence[BoardSpec], args: argparse.Namespace) -> list[BoardRow]:
    """The selected ``place:`` boards, with their holders as the labgrid coordinator reports them."""
    if not any(spec.place for spec in specs):
        return []
    from .places import farm_place_rows  # labgrid only when the farm has places

    chosen = {spec.name: spec for spec in specs}
    rows = {}
    for row in farm_place_rows(farm):
        if row.board in chosen:
            spec = chosen[row.board]
            state = f"{row.state} ({row.holder})" if row.holder else row.state
            port = row.endpoint or f"place {row.place}"
            rows[spec.name] = BoardRow(spec.name, spec.platform, spec.tags, port, state, "labgrid")
    if args.probe:
        _probe(farm, [chosen[name] for name, row in rows.items() if row.state == "free"], rows)
    return list(rows.values())


ROW_SOURCES: tuple[RowSource, ...] = (farm_rows, place_rows)


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_options(parser, lock=None)
    parser.add_argument("--probe", action="store_true", help="connect to free boards: firmware, unique id, free memory")


def _list(args: argparse.Namespace) -> int:
    farm = load(args.farm)
    specs = select(farm, args.board, args.board_tag)
    rows = [row for source in ROW_SOURCES for row in source(farm, specs, args)]
    lines = Lines()
    if args.json:
        lines.plain(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    header = ["board", "platform", "tags", "port", "state"]
    cells = [[r.name, r.platform or "-", ",".join(r.tags) or "-", r.port, r.state] for r in rows]
    if args.probe:
        header += ["firmware", "unique id", "free"]
        for cell, r in zip(cells, rows, strict=True):
            cell += [r.firmware or "-", r.unique_id or "-", "-" if r.mem_free is None else str(r.mem_free)]
    lines.plain(table([header, *cells]))
    return 0


# -- ports ------------------------------------------------------------------------------


@dataclass
class PortRow:
    device: str
    by_id: str
    vid_pid: str
    serial_number: str
    description: str
    board: str  # the farm.yaml board that names this port, if any


def by_id_links(directory: Path = BY_ID) -> dict[str, str]:
    """Device path -> its stable /dev/serial/by-id name (udev makes them for USB serial devices)."""
    links: dict[str, str] = {}
    if directory.is_dir():
        for link in sorted(directory.iterdir()):
            links.setdefault(os.path.realpath(link), str(link))
    return links


def port_rows(ports: Iterable[Any], farm: Farm | None, links: dict[str, str]) -> list[PortRow]:
    """One row per serial device (pyserial's ListPortInfo), marked with the farm board that names it."""
    rows = []
    for port in ports:
        by_id = links.get(os.path.realpath(port.device), "")
        named = ""
        for spec in farm.boards if farm else ():
            if (spec.serial_number and spec.serial_number == port.serial_number) or (
                spec.port and spec.port in (port.device, by_id)
            ):
                named = spec.name
        vid_pid = f"{port.vid:04x}:{port.pid:04x}" if port.vid is not None else ""
        rows.append(PortRow(port.device, by_id, vid_pid, port.serial_number or "", port.description or "", named))
    return rows


def _ports_arguments(parser: argparse.ArgumentParser) -> None:
    add_farm_option(parser)
    parser.add_argument("--all", action="store_true", help="also serial ports that are not USB (ttyS...)")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of a table")


def _ports(args: argparse.Namespace) -> int:
    farm = None
    if args.farm or find_farm_file(None, *ini_setting(Path.cwd())) is not None:
        farm = load(args.farm)  # marks the ports farm.yaml names; no farm is fine here
    ports = list(list_ports.comports())
    shown = [p for p in ports if args.all or p.vid is not None]
    rows = port_rows(shown, farm, by_id_links())
    lines = Lines()
    if args.json:
        lines.plain(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    if not rows:
        others = len(ports) - len(shown)
        hint = f" ({others} other serial port{'s' * (others != 1)}; --all shows them)" if others else ""
        lines.plain(f"no USB serial devices{hint}")
        return 0
    header = ["device", "by-id", "vid:pid", "serial", "description", "in farm.yaml"]
    cells = [
        [r.device, r.by_id or "-", r.vid_pid or "-", r.serial_number or "-", r.description or "-", r.board or "-"]
        for r in rows
    ]
    lines.plain(table([header, *cells]))
    return 0


# -- check ------------------------------------------------------------------------------


def _check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", help="the farm file (default: --farm, else found as pytest finds it)")
    add_farm_option(parser)


def _check(args: argparse.Namespace) -> int:
    """Every problem as file:line: key: message (what editors and CI read); exit 1 if any."""
    if args.path and args.farm and Path(args.path).resolve() != Path(args.farm).resolve():
        raise UsageError(f"two farm files to check: {args.path} and --farm {args.farm}; give one")
    found = find_farm_file(args.path or args.farm, *ini_setting(Path.cwd()))
    if found is None:
        raise UsageError(
            "no farm inventory to check: give PATH or --farm PATH, set $BOARDFARM_INVENTORY or boardfarm_inventory"
        )
    path = found.path
    try:
        farm = load_farm(path)
    except FarmConfigError as exc:
        for problem in exc.problems:
            print(problem)
        print(f"{len(exc.problems)} problem{'s' * (len(exc.problems) != 1)} in {path}")
        return 1
    print(f"{path}: ok, {len(farm.boards)} board{'s' * (len(farm.boards) != 1)}")
    return 0


COMMANDS: Sequence[Command] = (
    Command("list", "every board with its port and state (free, locked by whom, port missing)", _list_arguments, _list),
    Command("ports", "the USB serial devices present, marked where farm.yaml names them", _ports_arguments, _ports),
    Command("check", "validate a farm file; print every problem as file:line: key: message", _check_arguments, _check),
)
