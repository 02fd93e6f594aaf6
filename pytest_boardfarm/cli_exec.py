"""``boardfarm exec / run / eval / deploy / reset / flash``: drive the selected boards at once."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .cli_support import (
    Command,
    Lines,
    Outcome,
    UsageError,
    Work,
    add_selection_options,
    on_boards,
    print_outcomes,
    selected,
    table,
)
from .inventory import seconds_argument
from .pool import Allocated, BoardPool

FLASH_LOCK_TIMEOUT = 60.0  # flashing is long work, often a CI job's: it waits as long as before
DEFAULT_TIMEOUT = 30.0  # how long code may run on a board before it is interrupted


def _code_options(parser: argparse.ArgumentParser) -> None:
    add_selection_options(parser)
    parser.add_argument(
        "--timeout",
        type=seconds_argument(zero_ok=False),
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"interrupt code still running after this long (default {DEFAULT_TIMEOUT:g})",
    )


def _run_code(args: argparse.Namespace, command: str, work: Work) -> int:
    farm, specs = selected(args)
    outcomes = on_boards(farm, specs, work, lock_timeout=args.lock_timeout, command=command)
    return print_outcomes(outcomes, Lines(), as_json=args.json)


# -- exec, run, eval ------------------------------------------------------------------


def _text(what: str) -> Callable[[str], str]:
    """An argparse type: code from the command line must be text (bytes that are not UTF-8
    arrive as lone surrogates, which no board could be sent)."""

    def check(value: str) -> str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise argparse.ArgumentTypeError(f"the {what} is not UTF-8 text") from None
        return value

    return check


def _exec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("code", type=_text("code"), help="Python source to run on each board")
    _code_options(parser)


def _exec(args: argparse.Namespace) -> int:
    def work(held: Allocated, pool: BoardPool) -> Outcome:
        return Outcome(held.spec.name, True, output=held.board.exec(args.code, timeout=args.timeout))

    return _run_code(args, "exec", work)


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="a local script, run from RAM on each board")
    _code_options(parser)


def _run(args: argparse.Namespace) -> int:
    try:
        source = args.file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from None

    def work(held: Allocated, pool: BoardPool) -> Outcome:
        return Outcome(held.spec.name, True, output=held.board.exec(source, timeout=args.timeout))

    return _run_code(args, "run", work)


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("expr", type=_text("expression"), help="a Python expression; its value is printed (repr)")
    _code_options(parser)


def _eval(args: argparse.Namespace) -> int:
    def work(held: Allocated, pool: BoardPool) -> Outcome:
        value = held.board.eval(args.expr, timeout=args.timeout)
        return Outcome(held.spec.name, True, output=repr(value), value=value)

    return _run_code(args, "eval", work)


# -- deploy and reset: long work, a progress line per board, a table at the end -----------


def _long_work(args: argparse.Namespace, command: str, doing: str, work: Work) -> int:
    farm, specs = selected(args)
    lines = Lines(sys.stderr if args.json else sys.stdout)
    begin = time.monotonic()
    outcomes = on_boards(
        farm,
        specs,
        work,
        lock_timeout=args.lock_timeout,
        command=command,
        started=lambda name: lines.board(name, doing),
    )
    if args.json:
        return print_outcomes(outcomes, Lines(), as_json=True)
    for o in outcomes:
        lines.board(o.board, o.error if not o.ok else o.output)
    rows = [("board", "result", "seconds")]
    rows += [(o.board, "ok" if o.ok else "failed", f"{o.seconds:.1f}") for o in outcomes]
    lines.plain(table(rows))
    ok = sum(o.ok for o in outcomes)
    lines.plain(f"{ok} of {len(outcomes)} boards ok in {time.monotonic() - begin:.1f}s")
    return 0 if ok == len(outcomes) else 1


def _deploy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="local directory to copy")
    parser.add_argument("remote", nargs="?", default="/", help="where on the board (default /)")
    add_selection_options(parser)


def _deploy(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        raise UsageError(f"{args.dir} is not a directory")

    def work(held: Allocated, pool: BoardPool) -> Outcome:
        result = held.board.deploy(args.dir, args.remote)
        text = f"copied {len(result.copied)}, unchanged {len(result.skipped)}"
        return Outcome(held.spec.name, True, output=text, details={"copied": result.copied, "skipped": result.skipped})

    return _long_work(args, "deploy", f"deploying {args.dir} to {args.remote}", work)


def _reset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hard",
        action="store_true",
        help="farm.yaml's 'reset' command, an RTS pulse, or an emulator restart (default: soft reset)",
    )
    add_selection_options(parser)


def _reset(args: argparse.Namespace) -> int:
    def work(held: Allocated, pool: BoardPool) -> Outcome:
        if args.hard:
            note = pool.hard_reset(held.spec.name)
            return Outcome(held.spec.name, True, output=f"hard reset: {note}")
        held.board.soft_reset()
        return Outcome(held.spec.name, True, output="soft reset")

    return _long_work(args, "reset", "hard resetting" if args.hard else "soft resetting", work)


def _flash_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_options(parser, lock=FLASH_LOCK_TIMEOUT, json_output=False)
    parser.add_argument("--force", action="store_true", help="flash even boards that prove they run the image")


def _flash(args: argparse.Namespace) -> int:
    """Flash farm.yaml's firmware on the chosen boards (all with one), in parallel; a table at the end."""
    farm, specs = selected(args)
    if not args.board and not args.board_tag:
        specs = [s for s in specs if s.firmware is not None]
    without = [s.name for s in specs if s.firmware is None]
    if without or not specs:
        raise UsageError(f"no 'firmware' in farm.yaml for: {', '.join(without) or 'any board'}")
    names = [s.name for s in specs]

    def progress(line: str) -> None:
        print(line, flush=True)

    pool = BoardPool(
        farm, lock_timeout=args.lock_timeout, run_id="boardfarm flash", flash=True, force=args.force, log=progress
    )
    started = time.monotonic()
    try:
        pool.acquire_many(names)
    finally:
        pool.release_all()
    rows = [("board", "image", "result", "seconds")]
    failed = 0
    for name in names:
        outcome = pool.flashed.get(name)
        if outcome is None:  # never got to flashing: locked, missing, not answering
            failed += 1
            print(f"{name}: {pool.unavailable.get(name, 'not flashed')}", flush=True)
            rows.append((name, "-", "not flashed", "-"))
            continue
        failed += not outcome.ok
        print(f"{name}: {outcome.describe()}", flush=True)
        rows.append((name, outcome.running, outcome.result, f"{outcome.seconds:.1f}"))
    print(table(rows))
    print(f"{len(names) - failed} of {len(names)} boards ok in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


COMMANDS: Sequence[Command] = (
    Command("exec", "run Python code on every selected board at once", _exec_arguments, _exec),
    Command("run", "run a local script (from RAM) on every selected board at once", _run_arguments, _run),
    Command("eval", "evaluate an expression on every selected board, print its value", _eval_arguments, _eval),
    Command("deploy", "copy a directory to every selected board (unchanged files skipped)", _deploy_arguments, _deploy),
    Command("reset", "soft (or --hard) reset every selected board", _reset_arguments, _reset),
    Command("flash", "flash farm.yaml's firmware on the selected boards, verify, roll back", _flash_arguments, _flash),
)
