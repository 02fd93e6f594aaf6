"""Device tests: MicroPython test files that run on the boards, collected by pytest.

The ini option ``boardfarm_device_tests`` names directories, files or globs
(relative to the rootdir). Under them, pytest never imports a ``.py`` file on
the host; instead:

- ``test_*.py`` (or what ``python_files`` matches) is a *device test module*:
  each ``def test_*():`` is one test per matching board;
- any ``foo.py`` with ``foo.py.exp`` beside it is an *output test* (MicroPython's
  run-tests convention): one test per board, its output must equal the file.

A symlinked directory inside a device test path is never walked (a warning names
it): its files are neither device tests nor imported on the host. A file reached
through a link that leads out of the device path (named on the command line) is
a collection error.

Each file becomes a :class:`pytest.Module` whose object is made here, on the
host, from the parsed source: one stand-in function per device test, named and
placed (file, line) as the user wrote it, asking for the ``board`` fixture
through ``boardfarm_device``. So parametrization over boards, ``-k``, markers,
``--lf``, xdist scheduling, serial logs and every report work exactly as for
host-side tests; nothing about them is copied here.

The parser and the runner (devmodule.py, devrunner.py) are imported when a device
file is collected: every process registers this plugin, few projects have device tests.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import types
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .board import Board
from .identity import identify
from .session import SESSION_KEY, SHARED_RAM

if TYPE_CHECKING:  # the parser and the runner are imported when a device file is collected
    from .devmodule import DeviceSource
    from .devrunner import ModuleRunner, ModuleState, OutputTest

INI = "boardfarm_device_tests"
FIXTURE = "boardfarm_device"
DEVICE_TEST_FILES = ("test_*.py",)
NEXT_KEY = pytest.StashKey["pytest.Item | None"]()


def add_options(parser: pytest.Parser) -> None:
    parser.addini(
        INI,
        "directories, files or globs (relative to the rootdir) of MicroPython test files that run on the boards",
        type="linelist",
        default=[],
    )


@dataclass(frozen=True)
class DeviceRoot:
    """One device test path: as the ini option names it under the rootdir, and resolved."""

    path: Path  # absolute, links in it not followed: what pytest's walk sees
    real: Path

    def holds(self, lexical: Path) -> bool:
        """Is ``lexical`` (see ``_lexical``: as pytest names it) in this device path, whatever its links?"""
        return _within(lexical, self.path)

    def keeps(self, real: Path) -> bool:
        """Does ``real`` (resolved: every link followed) lie in this device path?"""
        return _within(real, self.real)


class DeviceTests:
    """The collection side: which files are device tests, and their collectors."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.roots = device_roots(config.rootpath, config.getini(INI))

    def kind(self, path: Path) -> type[pytest.File] | None:
        """The collector for a file under the device test paths, or None for any other file.

        A file named under a device path is never the host's, even when a link takes it
        elsewhere (that is a collection error); a file a link outside takes into one is ours too.
        """
        if path.suffix != ".py" or not self.roots:
            return None
        lexical, real = _lexical(path), path.resolve()  # once: every .py file of the project comes here
        if any(root.holds(lexical) and not root.keeps(real) for root in self.roots):
            return LinkedOutside
        if not any(root.holds(lexical) or root.keeps(real) for root in self.roots):
            return None
        if Path(f"{path}.exp").is_file():
            return OutputModule
        patterns = (*DEVICE_TEST_FILES, *self.config.getini("python_files"))
        if any(fnmatch.fnmatch(path.name, p) for p in patterns):
            return DeviceModule
        return NotATest

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        """A symlinked directory inside a device path is not walked: it may lead anywhere
        (outside the rootdir, into host code), and one inside would collect tests twice."""
        if not collection_path.is_symlink() or not collection_path.is_dir():
            return None
        lexical = _lexical(collection_path)
        if not any(root.holds(lexical) and lexical != root.path for root in self.roots):
            return None
        shown = os.path.relpath(collection_path, self.config.rootpath)
        message = (
            f"{shown}: a symlinked directory in a device test path is not followed "
            f"(it points to {collection_path.resolve()}); name the real directory in {INI}"
        )
        warnings.warn_explicit(message, pytest.PytestCollectionWarning, str(collection_path), 0)
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_pycollect_makemodule(self, module_path: Path, parent: pytest.Collector) -> pytest.File | None:
        """Files pytest's Python plugin would import: never on the host."""
        kind = self.kind(module_path)
        return kind.from_parent(parent, path=module_path) if kind else None

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> pytest.File | None:
        """Device files pytest's Python plugin does not take (output tests named freely)."""
        kind = self.kind(file_path)
        if kind is None or kind is NotATest or _python_takes(file_path, parent):
            return None
        return kind.from_parent(parent, path=file_path)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
        item.stash[NEXT_KEY] = nextitem  # boardfarm_device runs teardown() after a module's last test on a board
        return (yield)


def device_roots(rootdir: Path, entries: list[str]) -> list[DeviceRoot]:
    """The ini option's entries; each must match something inside the rootdir."""
    base = _lexical(rootdir)
    root = rootdir.resolve()
    found: list[DeviceRoot] = []
    for entry in entries:
        matches = sorted(glob.glob(str(base / entry), recursive=True))
        if not matches:
            raise pytest.UsageError(f"ini option {INI}: {entry!r} matches nothing under the rootdir {root}")
        for match in matches:
            path = Path(match).resolve()
            if not _within(path, root):
                raise pytest.UsageError(f"ini option {INI}: {entry!r} leads outside the rootdir {root}")
            found.append(DeviceRoot(_lexical(Path(match)), path))
    return found


def _lexical(path: Path) -> Path:
    """Absolute and normalised, links left as they are (as pytest names paths)."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _python_takes(path: Path, parent: pytest.Collector) -> bool:
    """Would pytest's own Python plugin collect this file (and so ask pytest_pycollect_makemodule)?"""
    if parent.session.isinitpath(path):
        return True
    return any(
        fnmatch.fnmatch(str(path) if os.sep in p else path.name, p) for p in parent.config.getini("python_files")
    )


class NotATest(pytest.File):
    """A helper file among the device tests: never imported on the host, nothing to collect."""

    def collect(self) -> list[pytest.Item]:
        return []


class LinkedOutside(pytest.File):
    """A file named under a device path that a link takes out of it: neither a device test
    nor the host's, so an error rather than a silent skip."""

    def collect(self) -> list[pytest.Item]:
        shown = os.path.relpath(self.path, self.config.rootpath)
        raise self.CollectError(
            f"{shown} is reached through a symlink that leads outside the device test path "
            f"(to {self.path.resolve()}); it is not collected, on the boards or on the host"
        )


class _HostModule(pytest.Module):
    """A module object made on the host from a device file; only our stand-ins are tests."""

    def _getobj(self) -> types.ModuleType:
        module = types.ModuleType(f"boardfarm_device:{self.nodeid}")
        module.__file__ = str(self.path)
        from .devmodule import DeviceSourceError

        try:
            self._fill(module)
        except (DeviceSourceError, OSError, UnicodeDecodeError) as exc:
            raise self.CollectError(str(exc)) from None
        return module

    def _fill(self, module: types.ModuleType) -> None:
        raise NotImplementedError

    @property
    def shown(self) -> str:
        """The file as reports name it: relative to the rootdir."""
        return self.nodeid.split("::", 1)[0]

    def istestfunction(self, obj: object, name: str) -> bool:
        return getattr(obj, "__boardfarm_device__", False) is True

    def istestclass(self, obj: object, name: str) -> bool:
        return False


class DeviceModule(_HostModule):
    """``test_*.py`` under the device paths: one test per ``def test_*():`` per board."""

    source: DeviceSource
    state: ModuleState

    def _fill(self, module: types.ModuleType) -> None:
        from .devmodule import parse
        from .devrunner import ModuleState

        text = self.path.read_text(encoding="utf-8")
        self.source = parse(self.shown, text, is_test=self._is_test_name)
        self.state = ModuleState(token=os.urandom(4).hex())
        setattr(module, SHARED_RAM, True)
        if self.source.selection:
            module.pytestmark = [  # type: ignore[attr-defined]
                pytest.mark.board(**self.source.selection)
            ]
        for name, chunk in self.source.tests.items():
            setattr(module, name, _stand_in(name, self.path, chunk.first))

    def _is_test_name(self, name: str) -> bool:
        return self._matches_prefix_or_glob_option("python_functions", name)


class OutputModule(_HostModule):
    """``foo.py`` with ``foo.py.exp``: one test per board, comparing the printed output."""

    test: OutputTest

    def _fill(self, module: types.ModuleType) -> None:
        from .devrunner import OutputTest

        self.test = OutputTest.read(self.path, self.shown)
        name = self.path.stem
        setattr(module, name, _stand_in(name, self.path, 1))


def _stand_in(name: str, path: Path, line: int) -> Callable[..., None]:
    """A host function that pytest collects as the device test: the user's name, file and
    line (reports point there), asking for the fixture that brings a board and runs it."""
    source = "\n" * (line - 1) + f"def stand_in({FIXTURE}): {FIXTURE}.run()"
    namespace: dict[str, Any] = {}
    exec(compile(source, str(path), "exec"), namespace)
    function = namespace["stand_in"]
    function.__code__ = function.__code__.replace(co_name=name)
    function.__name__ = function.__qualname__ = name
    function.__boardfarm_device__ = True
    return function  # type: ignore[no-any-return]


class DeviceRun:
    """What a device test's stand-in gets: its board, and the way to run the test there."""

    def __init__(self, item: pytest.Item, board: Board) -> None:
        self.item = item
        self.board = board
        module = item.getparent(_HostModule)
        assert module is not None
        self.module = module

    @property
    def line(self) -> int:
        return int(self.item.reportinfo()[1] or 0) + 1

    def runner(self) -> ModuleRunner:
        from .devrunner import ModuleRunner

        assert isinstance(self.module, DeviceModule)
        return ModuleRunner(self.board, self.module.source, self.module.state)

    def run(self) -> None:
        __tracebackhide__ = True
        module = self.module
        if isinstance(module, OutputModule):
            _as_pytest(lambda: module.test.run(self.board), module.path, 1)
        else:
            name = getattr(self.item, "originalname", self.item.name)
            _as_pytest(lambda: self.runner().run(name), self.module.path, self.line)


def _as_pytest(call: Callable[[], None], path: Path, line: int) -> None:
    """Run ``call``; the runner's failures and skips become pytest's, raised from a frame at
    the user's file and failing line (where reports and annotations point), with no host
    frames shown: a failure's text is the board's traceback."""
    __tracebackhide__ = True
    from .devrunner import DeviceTestFailure, DeviceTestSkipped

    outcome: BaseException
    try:
        call()
        return
    except DeviceTestSkipped as exc:
        outcome, line = pytest.skip.Exception(str(exc)), exc.line or line
    except DeviceTestFailure as exc:
        outcome, line = pytest.fail.Exception(str(exc), pytrace=False), exc.line or line
    exec(compile("\n" * (line - 1) + "raise outcome", str(path), "exec"), {"outcome": outcome})


@pytest.fixture
def boardfarm_device(board: Any, request: pytest.FixtureRequest) -> Iterator[DeviceRun]:
    """The board for a device test, with its module loaded there (setup() run); after the
    module's last test on this board, its teardown()."""
    __tracebackhide__ = True
    item = request.node
    run = DeviceRun(item, board)
    function_test = isinstance(item.getparent(_HostModule), DeviceModule)
    if function_test:
        _as_pytest(run.runner().load, run.module.path, run.line)
    yield run
    if function_test and _last_of_module_on_board(item):
        held = request.config.stash[SESSION_KEY].pool.held.get(board.name)  # a recovery may have replaced it
        if held is not None:
            _as_pytest(DeviceRun(item, held.board).runner().finish, run.module.path, run.line)


def _last_of_module_on_board(item: pytest.Item) -> bool:
    if item.session.shouldfail or item.session.shouldstop:  # -x, --maxfail: no test follows this one
        return True
    following = item.stash.get(NEXT_KEY, None)
    if following is None or following.parent is not item.parent:
        return True
    this, that = identify(item), identify(following)
    return this is None or that is None or this.board != that.board
