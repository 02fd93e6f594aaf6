"""Farm commands (hard reset, flash): argument templates, never a shell.

farm.yaml gives a command as a string split like a shell would, or as a list.
Each argument is filled in on its own (``{port}`` -> the port), so a value
with spaces or quotes stays one argument and can never become a new command.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from string import Formatter
from typing import IO

from .deadline import Deadline
from .errors import BoardError, Stopped

FIELDS = ("name", "port", "serial_number", "platform")  # what a reset command may use
FLASH_FIELDS = (*FIELDS, "image")  # a flash command also gets the firmware image's path
OUTPUT_KEPT = 4096  # bytes of a command's output kept for its log line and errors


class CommandError(BoardError):
    """A farm command could not be filled in, started, or did not succeed in time."""


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    returncode: int
    output: str


def template_problems(template: Sequence[str], known: Iterable[str]) -> list[str]:
    """What is wrong with a command template (nothing: it is fine).

    Only plain ``{field}`` names are allowed: no attributes, indexes, conversions
    or format specs (``{port.__class__}``, ``{port[0]}``, ``{port!r}``), so filling
    in a template can never reach anything but the value itself.
    """
    known = list(known)
    problems = []
    for arg in template:
        try:
            parsed = list(Formatter().parse(arg))
        except ValueError as exc:
            problems.append(f"argument {arg!r}: {exc} (write {{{{ or }}}} for a literal brace)")
            continue
        for _, name, spec, conversion in parsed:
            if name is None:
                continue
            if name in known and not spec and conversion is None:
                continue
            text = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            if name in known:
                problems.append(f"{text}: only a plain {{{name}}} is allowed (no conversion or format spec)")
            else:
                problems.append(f"unknown field {text}; known: {', '.join('{' + k + '}' for k in known)}")
    return problems


def render(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Fill each argument's ``{field}``s; unknown fields are an error, not a guess."""
    problems = template_problems(template, values)
    if problems:
        raise CommandError(f"{'; '.join(problems)} (in command {list(template)})")
    return [arg.format_map(values) for arg in template]


STOP_POLL_SECONDS = 0.1  # how soon a command sees that the run was stopped


def run(
    template: Sequence[str], values: Mapping[str, str], timeout: float, stopping: threading.Event | None = None
) -> CommandResult:
    """Run a farm command to its end or its deadline.

    Its output goes to a file, not a pipe: memory stays bounded whatever it prints,
    and a helper it leaves in the background (holding the output open) does not make
    a finished command look hung. It gets no input (never the run's terminal), runs
    in a process group of its own, and that group is killed if it overruns or the
    run is stopped meanwhile, so nothing it started outlives the run. A signal reaches only
    the main thread: a command run in another thread ends when ``stopping`` is set.
    """
    argv = render(template, values)
    with tempfile.TemporaryFile() as out:
        try:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        except FileNotFoundError:
            raise CommandError(f"command not found: {argv[0]}") from None
        except OSError as exc:  # not executable, a directory, too many processes...
            raise CommandError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        try:
            returncode = _wait(proc, timeout, stopping)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise CommandError(f"{argv} did not finish within {timeout:g}s") from None
        except BaseException:  # Ctrl-C, SIGTERM, the test's time limit, a stop
            _kill_group(proc)
            raise
        output = _tail(out)
    if returncode != 0:
        raise CommandError(f"{argv} exited with {returncode}: {output[-500:]}")
    return CommandResult(argv, returncode, output)


def _wait(proc: subprocess.Popen[bytes], timeout: float, stopping: threading.Event | None) -> int:
    if stopping is None:
        return proc.wait(timeout)
    deadline = Deadline(timeout)
    while True:
        if stopping.is_set():
            raise Stopped(f"{proc.args!r} stopped: the command was stopped")
        try:
            return proc.wait(deadline.sooner(STOP_POLL_SECONDS).remaining())
        except subprocess.TimeoutExpired:
            if deadline.expired():
                raise


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(out: IO[bytes]) -> str:
    """The last few KiB the command printed, as text whatever the bytes were."""
    size = out.seek(0, os.SEEK_END)
    out.seek(max(0, size - OUTPUT_KEPT))
    return out.read().decode("utf-8", "replace").strip()
