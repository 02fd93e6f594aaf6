"""Write the bytecode of pytest_boardfarm/ that an editable install leaves out (scripts/setup runs this).

Installing a wheel compiles the package; ``pip install -e`` does not, and with
PYTHONDONTWRITEBYTECODE set Python never caches it either. Two caches, both kept
next to the sources in ``__pycache__`` (which git and the sdist leave out):

* Python's own (compileall), for ``python -c``/``-m`` and the ``boardfarm`` command;
* pytest's: pytest imports a plugin's modules through its assertion rewriter, which
  reads neither of Python's .pyc files but its own (``*.cpython-3X-pytest-<version>.pyc``),
  and writes them only where bytecode may be written. Without them every pytest
  process, every xdist worker among them, rewrites and compiles each module it
  imports. So this runs pytest once, with bytecode allowed, through a session that
  imports every module of the package (for this pytest: another version has its own).
  The other plugins' modules it loads on the way are cached alike, as pytest would
  cache them itself without PYTHONDONTWRITEBYTECODE.

A module edited since is compiled again in each process until this runs again.
The MicroPython helpers (firmware_helpers/) are not CPython's to compile.
"""

from __future__ import annotations

import compileall
import importlib
import os
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_boardfarm"


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


class ImportEveryModule:
    """Imports each module once pytest has loaded and configured its plugins, then collects nothing."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> bool:
        for name in module_names():
            importlib.import_module(name)
        return True


def main() -> int:
    sys.dont_write_bytecode = False
    # Not a test run: the developer's options (a --farm, -p no:boardfarm) are for their own.
    os.environ.pop("PYTEST_ADDOPTS", None)
    # pytest rewrites an editable install's package only where it finds it on sys.path: run it
    # as `python -m pytest` in the checkout does (scripts/test), wherever this was started.
    os.chdir(PACKAGE.parent)
    sys.path.insert(0, str(PACKAGE.parent))
    if not compileall.compile_dir(PACKAGE, quiet=1):
        return 1
    # --co: xdist (-n in PYTEST_ADDOPTS, say) starts no workers to collect and run the tests.
    status = pytest.main(["--co", "-qq", "-p", "no:cacheprovider"], plugins=[ImportEveryModule()])
    return 0 if status == pytest.ExitCode.NO_TESTS_COLLECTED else int(status)


if __name__ == "__main__":
    sys.exit(main())
