"""Farm commands (hard reset, flash): argument templates, never a shell.

farm.yaml gives a command as a string split like a shell would, or as a list.
Each argument is filled in on its own (``{port}`` -> the port), so a value
with spaces or quotes stays one argument and can never become a new command.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from string import Formatter

from .errors import BoardError

FIELDS = ("name", "port", "serial_number", "platform")


class CommandError(BoardError):
    """A farm command could not be filled in, started, or did not succeed in time."""


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    returncode: int
    output: str


def render(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Fill each argument's ``{field}``s; unknown fields are an error, not a guess."""
    argv = []
    for arg in template:
        for _, field, _, _ in Formatter().parse(arg):
            if field is not None and field not in values:
                raise CommandError(f"unknown field {{{field}}} in command {list(template)}; known: {', '.join(values)}")
        argv.append(arg.format_map(values))
    return argv


def run(template: Sequence[str], values: Mapping[str, str], timeout: float) -> CommandResult:
    argv = render(template, values)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise CommandError(f"command not found: {argv[0]}") from None
    except OSError as exc:  # not executable, a directory, too many processes...
        raise CommandError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{argv} did not finish within {timeout:g}s") from exc
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise CommandError(f"{argv} exited with {done.returncode}: {output[-500:]}")
    return CommandResult(argv, done.returncode, output)
