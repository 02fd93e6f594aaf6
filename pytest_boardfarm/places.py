"""Boards on other hosts: places on a labgrid coordinator, behind the local lock's interface.

A ``place:`` board is held by acquiring its labgrid place for as long as the
run holds the board, exactly where a local board takes its ``flock``
(:class:`PlaceLock` has :class:`~.locks.BoardLock`'s ``acquire``/``release``/
``is_free``/``who``), so the pool does not care where a board lives. Its UART
is the place's ``NetworkSerialPort`` (``rfc2217://`` or ``socket://``).

Each process talks to the coordinator through one :class:`Coordinator`
session, on an event loop of its own thread (labgrid's client is asyncio and
gRPC; a gRPC channel belongs to one loop). The session's name, which the
coordinator records as the holder of what it acquires, is
``HOST/USER+boardfarm-PID-STARTTIME``: a later run on the same host can tell
that the process behind a place no longer exists (no such pid, or a pid
reused by a process started at another time) and take the place over. A
holder without that mark (a person's ``labgrid-client acquire``, another
tool) or whose process lives is never taken over, only waited for.

labgrid is an optional extra and is imported only here, only when a farm
has places; asyncio too, only when a session opens (every xdist worker imports
this module, and asyncio with ssl is a tenth of a worker's start-up).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import pwd
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import BoardError
from .locks import LockTimeout, pause

if TYPE_CHECKING:
    from .inventory import Farm  # inventory.py imports this module

EXTRA = "pip install 'pytest-boardfarm[labgrid]'"
DEFAULT_PORT = 20408  # labgrid's coordinator
POLL_SECONDS = 0.2  # waiting for another run's place: not a device wait
CALL_SECONDS = 30.0  # the longest one request to the coordinator may take
INTERRUPTED_CALL_SECONDS = 5.0  # after Ctrl-C, how long a request on its way gets to end
MARK = "+boardfarm-"
POWER_OFF_SECONDS = 1.0  # how long a power cycle keeps the board off
POWER_SECONDS = 30.0  # the longest a power cycle may take (labgrid-client's start, the switch, the delay)
# Resources labgrid-client's 'power' command can switch (labgrid/remote/client.py, ClientSession.power).
POWER_RESOURCES = frozenset(
    {
        "NetworkPowerPort",
        "NetworkUSBPowerPort",
        "NetworkSiSPMPowerPort",
        "PDUDaemonPort",
        "TasmotaPowerPort",
        "NetworkYKUSHPowerPort",
    }
)
_TOKEN = re.compile(r"^(?P<user>.*)\+boardfarm-(?P<pid>[0-9]+)-(?P<start>[0-9]+)$")
_T = TypeVar("_T")
_CHANNEL_OPTIONS = [  # labgrid's own keepalive settings (labgrid/remote/client.py), and a connection per session
    ("grpc.keepalive_time_ms", 7500),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.http2.ping_timeout_ms", 10000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.use_local_subchannel_pool", 1),
]


class PlaceError(BoardError):
    """The coordinator, a place or its serial port cannot be used (the message says why)."""


def labgrid_installed() -> bool:
    """Whether labgrid can be imported (looked up, not imported: it is slow to import)."""
    return importlib.util.find_spec("labgrid") is not None


def _labgrid_client() -> Any:
    # gRPC's fork handlers (on unless turned off before gRPC loads) run in every child this
    # process forks while its channel threads are busy, such as an emulator started with its
    # parent-death signal: seen leaving the child dead before its exec ("epoll_wait error: Bad
    # file descriptor"). The children exec at once and never use gRPC: no handlers needed.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    try:
        return importlib.import_module("labgrid.remote.client")
    except ImportError as exc:
        raise PlaceError(f"a farm with 'coordinator:' or 'place:' needs labgrid ({exc}); install it: {EXTRA}") from None


# -- who holds a place -----------------------------------------------------------


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot), None if there is none.

    A zombie counts as none: a killed run's orphans wait there for a parent to
    reap them, which some containers' init never does."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()  # the name in parentheses may hold spaces
    if fields[0] in (b"Z", b"X"):  # field 3 of proc(5): zombie, dead
        return None
    return int(fields[19])  # field 22 of proc(5), counted after pid and name


def holder_name(pid: int | None = None) -> str:
    """The name this process acquires places under: ``USER+boardfarm-PID-STARTTIME``."""
    pid = os.getpid() if pid is None else pid
    return f"{_user()}{MARK}{pid}-{process_start(pid) or 0}"


def dead_holder(acquired: str, host: str | None = None) -> bool:
    """Whether ``acquired`` (labgrid's ``HOST/USER``) names a run of ours, on this host,
    whose process no longer exists. False for anything else: a person, another
    tool, another host (whose processes we cannot see), a live run."""
    holder_host, _, user = acquired.partition("/")
    match = _TOKEN.match(user)
    if match is None or holder_host != (host or socket.gethostname()):
        return False
    return process_start(int(match["pid"])) != int(match["start"])


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


# -- what a place is -----------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A place's NetworkSerialPort, as its exporter publishes it."""

    host: str
    port: int
    protocol: str  # rfc2217 or raw

    @property
    def url(self) -> str:
        scheme = {"rfc2217": "rfc2217", "raw": "socket"}[self.protocol]
        return f"{scheme}://{self.host}:{self.port}"


@dataclass(frozen=True)
class PlaceState:
    """One place as the coordinator reports it."""

    name: str
    acquired: str | None  # HOST/USER, or None when free
    tags: dict[str, str]
    endpoint: Endpoint | None
    problem: str = ""  # why the place has no usable serial port, if it has none
    power: str = ""  # the power resource ``labgrid-client power`` switches, if the place has one


@dataclass(frozen=True)
class PlaceRow:
    """A line of ``boardfarm list`` for a remote board."""

    board: str
    place: str
    holder: str  # HOST/USER, or "" when free
    state: str  # free; held; held by a run that died; missing; unknown (and why there is no serial port)
    endpoint: str  # the URL the board is reached at, or ""


def coordinator_address(address: str) -> str:
    """``HOST[:PORT]``, the port defaulting to labgrid's."""
    return address if re.search(r":[0-9]+$", address) else f"{address}:{DEFAULT_PORT}"


class Coordinator:
    """A session with a labgrid coordinator, on its own thread and event loop (a pool opens one)."""

    def __init__(self, address: str, *, name: str | None = None) -> None:
        import asyncio  # here: see the module's docstring

        client = _labgrid_client()
        self._grpc = importlib.import_module("grpc")
        self._pb = importlib.import_module("labgrid.remote.generated.labgrid_coordinator_pb2")
        self.address = coordinator_address(address)
        self.host = socket.gethostname()
        self.user = name or holder_name()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="boardfarm-labgrid", daemon=True)
        self._thread.start()

        stub_module = importlib.import_module("labgrid.remote.generated.labgrid_coordinator_pb2_grpc")

        async def start() -> Any:
            session = client.ClientSession(self.address, asyncio.get_running_loop())
            session.gethostname = lambda: self.host  # the holder name the coordinator records
            session.getuser = lambda: self.user
            # gRPC shares one TCP connection among a process's channels to one address, and the
            # coordinator tells clients apart by connection: a second session (another pool, a
            # test) would be refused. A channel of its own gives each session its own.
            await session.channel.close()
            session.channel = self._grpc.aio.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
            session.stub = stub_module.CoordinatorStub(session.channel)
            await session.start()
            return session

        try:
            self._session = self._call(start(), f"cannot reach the labgrid coordinator at {self.address}")
        except BaseException:
            self._stop_loop()
            raise

    @property
    def holder(self) -> str:
        return f"{self.host}/{self.user}"

    def _call(self, coro: Coroutine[Any, Any, _T], failure: str) -> _T:
        import asyncio
        import concurrent.futures

        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(CALL_SECONDS)
        except KeyboardInterrupt:  # the request may be on its way: let it end, so what follows comes after it
            concurrent.futures.wait([future], timeout=INTERRUPTED_CALL_SECONDS)
            raise
        except concurrent.futures.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
            future.cancel()
            raise PlaceError(f"{failure}: no answer within {CALL_SECONDS:g}s") from None
        except PlaceError:
            raise
        except Exception as exc:
            details = exc.details() if hasattr(exc, "details") else str(exc)
            raise PlaceError(f"{failure}: {details}") from None

    def _request(self, method: str, request: Any, failure: str) -> str | None:
        """Send one request and catch up with the coordinator; its refusal text, or None."""
        session = self._session

        async def send() -> str | None:
            try:
                await getattr(session.stub, method)(request)
            except self._grpc.aio.AioRpcError as exc:
                return str(exc.details())
            await session.sync_with_coordinator()
            return None

        return self._call(send(), failure)

    def state(self, name: str) -> PlaceState | None:
        """The place now (None: no such place), with its serial port if it has a usable one."""
        session = self._session

        async def read() -> PlaceState | None:
            await session.sync_with_coordinator()
            place = session.places.get(name)
            if place is None:
                return None
            endpoint, problem = self._endpoint(place)
            power = next((path[2] for path in self._paths(place) if path[2] in POWER_RESOURCES), "")
            return PlaceState(name, place.acquired or None, dict(place.tags), endpoint, problem, power)

        return self._call(read(), f"cannot read place {name!r} from {self.address}")

    def _paths(self, place: Any) -> list[tuple[str, str, str, str]]:
        """The place's resources: what it holds when acquired, else what it matches now."""
        paths = [tuple(p) for p in place.acquired_resources] if place.acquired else []
        return paths or [
            (exporter, group_name, resource.cls, resource_name)
            for exporter, groups in self._session.resources.items()
            for group_name, group in groups.items()
            for resource_name, resource in group.items()
            if place.getmatch((exporter, group_name, resource.cls, resource_name))
        ]

    def _endpoint(self, place: Any) -> tuple[Endpoint | None, str]:
        """The place's NetworkSerialPort, or why it has no usable one."""
        for exporter, group_name, cls, resource_name in self._paths(place):
            if cls != "NetworkSerialPort":
                continue
            resource = self._session.resources.get(exporter, {}).get(group_name, {}).get(resource_name)
            where = f"{exporter}/{group_name}/{cls}/{resource_name}"
            if resource is None or not resource.data:
                return None, f"its serial port {where} is gone (exporter {exporter} disconnected?)"
            if not resource.avail:
                return None, f"its serial port {where} is not available (exporter {exporter})"
            params = resource.params
            protocol = str(params.get("protocol") or "rfc2217")
            if protocol not in ("rfc2217", "raw"):
                return None, f"its serial port {where} speaks {protocol!r}; rfc2217 or raw are supported"
            return Endpoint(str(params["host"]), int(params["port"]), protocol), ""
        patterns = sorted(str(match) for match in place.matches)
        if patterns and not place.acquired:  # it names resources, none of which is published now
            return None, (
                f"no exporter publishes a NetworkSerialPort it matches ({', '.join(patterns)}) now:"
                " is the exporter running? (labgrid-client resources)"
            )
        return None, "it has no NetworkSerialPort (labgrid-client -p PLACE add-match EXPORTER/GROUP/NetworkSerialPort)"

    def try_acquire(self, name: str) -> str | None:
        """Acquire the place if it is free now; the coordinator's refusal otherwise."""
        request = self._pb.AcquirePlaceRequest(placename=name)
        return self._request("AcquirePlace", request, f"cannot acquire place {name!r}")

    def release(self, name: str, *, holder: str | None = None) -> None:
        """Release the place, but only if ``holder`` (default: we) still holds it."""
        request = self._pb.ReleasePlaceRequest(placename=name, fromuser=holder or self.holder)
        self._request("ReleasePlace", request, f"cannot release place {name!r}")

    def close(self) -> None:
        with contextlib.suppress(PlaceError):
            self._call(self._session.stop(), "closing")
            self._call(self._session.close(), "closing")
        self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()


class PlaceLock:
    """A labgrid place held for a board, with BoardLock's interface (see the module docstring)."""

    def __init__(self, coordinator: Coordinator, place: str, notice: Callable[[str], None] = lambda _: None) -> None:
        self.coordinator = coordinator
        self.key = place
        self.took_over: str | None = None  # the dead run's name, when we took the place from one
        self.notice = notice  # told when the place cannot be released (it then stays acquired)
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self, timeout: float, stopping: threading.Event | None = None) -> None:
        """Wait up to ``timeout`` seconds; LockTimeout names the holder as the coordinator reports it
        (Stopped once ``stopping`` is set)."""
        end = time.monotonic() + timeout
        dead: set[str] = set()  # dead runs we released the place from (each once)
        while True:
            state = self._state()
            if state.acquired and state.acquired not in dead and dead_holder(state.acquired, self.coordinator.host):
                dead.add(state.acquired)
                self.coordinator.release(self.key, holder=state.acquired)  # only if that dead run still has it
                continue
            try:
                refusal = None if state.acquired else self.coordinator.try_acquire(self.key)
            except BaseException:  # Ctrl-C, or no answer: the coordinator may have granted it all the same
                with contextlib.suppress(PlaceError):
                    self.coordinator.release(self.key)  # only if we have it
                raise
            if not state.acquired and refusal is None:
                self._held = True
                self.took_over = ", ".join(sorted(dead)) or None
                return
            if time.monotonic() >= end:
                who = state.acquired or refusal
                raise LockTimeout(
                    f"place {self.key!r} is acquired by {who} (labgrid coordinator {self.coordinator.address});"
                    f" gave up after {timeout:g}s"
                )
            pause(POLL_SECONDS, stopping)

    def _state(self) -> PlaceState:
        state = self.coordinator.state(self.key)
        if state is None:
            raise PlaceError(f"no place {self.key!r} on the labgrid coordinator {self.coordinator.address}")
        return state

    def endpoint(self) -> Endpoint:
        """Where the board's UART is now; PlaceError if its exporter has gone."""
        state = self._state()
        if state.endpoint is None:
            raise PlaceError(f"place {self.key!r}: {state.problem}")
        return state.endpoint

    def has_power(self) -> bool:
        """Whether the place has a power resource for ``power_cycle``."""
        return bool(self._state().power)

    def power_cycle(self, delay: float = POWER_OFF_SECONDS) -> str:
        """Switch the board off and on with the place's power resource, through ``labgrid-client
        power cycle`` (labgrid's drivers for every kind of switch), as the holder of the place."""
        argv = [sys.executable, "-m", "labgrid.remote.client", "-x", self.coordinator.address, "-p", self.key]
        argv += ["power", "cycle", "--delay", repr(delay)]
        env = dict(os.environ, LG_HOSTNAME=self.coordinator.host, LG_USERNAME=self.coordinator.user)
        try:
            result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=POWER_SECONDS)
        except subprocess.TimeoutExpired:
            raise PlaceError(f"place {self.key!r}: power cycle took more than {POWER_SECONDS:g}s") from None
        if result.returncode != 0:
            said = (result.stderr or result.stdout).strip()[-500:]
            raise PlaceError(f"place {self.key!r}: power cycle failed (exit {result.returncode}): {said}")
        return f"power-cycled place {self.key} ({self._state().power})"

    def is_free(self) -> bool:
        """Whether nobody (or only a dead run of ours) holds the place now."""
        try:
            state = self._state()
        except PlaceError:
            return True  # acquire() will say what is wrong
        return self._held or not state.acquired or dead_holder(state.acquired, self.coordinator.host)

    def who(self) -> str:
        try:
            return self._state().acquired or "nobody"
        except PlaceError as exc:
            return f"unknown ({exc})"

    def release(self) -> None:
        if self._held:
            self._held = False
            try:
                self.coordinator.release(self.key)
            except PlaceError as exc:  # the place stays acquired in labgrid, by a run about to end
                self.notice(
                    f"{exc}; it stays acquired by {self.coordinator.holder} until the next run on this host"
                    f" takes it over, or: labgrid-client -x {self.coordinator.address} -p {self.key} release --kick"
                )


def place_rows(coordinator: Coordinator, boards: list[tuple[str, str]]) -> list[PlaceRow]:
    """``boardfarm list`` lines for (board name, place name) pairs."""
    rows = []
    for board, place in boards:
        try:
            state = coordinator.state(place)
        except PlaceError as exc:
            rows.append(PlaceRow(board, place, "", f"unknown: {exc}", ""))
            continue
        if state is None:
            rows.append(PlaceRow(board, place, "", "missing: no such place on the coordinator", ""))
            continue
        holder = state.acquired or ""
        if not holder:
            status = "free"
        elif dead_holder(holder, coordinator.host):
            status = "held by a run that died (the next run takes it over)"
        else:
            status = "held"
        if state.endpoint is None:
            status += f"; {state.problem}"
        rows.append(PlaceRow(board, place, holder, status, state.endpoint.url if state.endpoint else ""))
    return rows


def farm_place_rows(farm: Farm) -> list[PlaceRow]:
    """``boardfarm list`` lines for a farm's ``place:`` boards (none for a farm without places).

    A coordinator that cannot be reached gives each place a row saying so, not an exception:
    the local boards are still worth listing."""
    boards = [(spec.name, spec.place) for spec in farm.boards if spec.place]
    if not boards:
        return []
    assert farm.coordinator is not None  # inventory.py refuses a place without one
    try:
        coordinator = Coordinator(farm.coordinator)
    except PlaceError as exc:
        return [PlaceRow(board, place, "", f"unknown: {exc}", "") for board, place in boards]
    try:
        return place_rows(coordinator, boards)
    finally:
        coordinator.close()
