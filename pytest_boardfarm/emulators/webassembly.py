"""MicroPython's WebAssembly port (current MicroPython) under Node, its REPL served on TCP.

The port is the npm package ``@micropython/micropython-webassembly-pyscript``,
installed by ``scripts/setup`` into ``node/`` of the checkout (or wherever
``BOARDFARM_NODE_MODULES`` points). ``mpwasm_bridge.mjs`` loads it and serves
its REPL like a UART. Its image is the package's ``micropython.mjs`` (the
``.wasm`` beside it). What this port does differently, found by trying:

- it ends printed lines with ``\\n`` only; the raw REPL's own lines end ``\\r\\n``;
- raw-paste mode would wedge it for good, so the bridge drops that request and
  clients fall back to plain raw mode after a short wait (see ``rawrepl.py``);
- Ctrl-C cannot stop running code: Node's event loop is blocked while Python
  runs, so a deaf board is restarted (``hard_reset``), with an empty filesystem;
- the port leaves a soft reboot (Ctrl-D at an empty prompt, SystemExit) to its
  host, so the bridge does it: a fresh interpreter, the files copied over.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .base import EmulatedBoard, EmulatorError

NODE = "node"
PACKAGE = "@micropython/micropython-webassembly-pyscript"
NODE_MODULES_ENV = "BOARDFARM_NODE_MODULES"
BRIDGE = Path(__file__).with_name("mpwasm_bridge.mjs")


def node_modules() -> Path:
    """Where scripts/setup installs the npm packages (``node/node_modules`` of the checkout)."""
    configured = os.environ.get(NODE_MODULES_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "node" / "node_modules"


class WebAssemblyBoard(EmulatedBoard):
    """One MicroPython WebAssembly port in a Node process; ``firmware`` is its micropython.mjs."""

    name = "webassembly"
    what = "an emulated WebAssembly MicroPython"

    @classmethod
    def default_firmware(cls) -> Path:
        return node_modules() / PACKAGE / "micropython.mjs"

    def check_installed(self) -> list[str]:
        node = shutil.which(NODE)
        missing = [what for what, ok in ((NODE, node), (str(self.firmware), self.firmware.is_file())) if not ok]
        if missing:
            raise EmulatorError(
                f"cannot start {self.what}: {', '.join(missing)} not found; "
                f"run scripts/setup (it installs nodejs and npm, then {PACKAGE} into node/), "
                f"or set {NODE_MODULES_ENV} to the node_modules folder that holds {PACKAGE}"
            )
        assert node is not None
        return [node]

    def argv(self, program: list[str]) -> list[str]:
        return [*program, str(BRIDGE), str(self.firmware), self.host, str(self.port)]
