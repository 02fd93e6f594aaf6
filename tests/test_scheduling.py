"""The xdist scheduler on its own: workers are fakes that record what they are sent,
driven in the order xdist's DSession calls the scheduler (add_node when a worker is
ready, add_node_collection when it has collected and schedule() once all have,
mark_test_complete after each test, remove_node when it finishes or crashes). The runs on emulated
boards are in test_plugin.py and test_faults.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from pytest_boardfarm.identity import TestBoard
from pytest_boardfarm.scheduling import BoardScheduling

BOARDS = ["sim-1", "sim-2", "sim-3"]
TESTS = [f"test_x.py::test_{i}[{board}]" for board in BOARDS for i in range(4)]


@dataclass(eq=False)
class FakeWorker:
    """What the scheduler uses of xdist's WorkerController."""

    id: str
    sent: list[list[int]] = field(default_factory=list)
    shutdown_sent: bool = False

    @property
    def gateway(self) -> SimpleNamespace:
        return SimpleNamespace(id=self.id)

    @property
    def shutting_down(self) -> bool:
        return self.shutdown_sent

    def send_runtest_some(self, indices: list[int]) -> None:
        assert not self.shutdown_sent, f"{self.id}: tests sent after its shutdown"
        self.sent.append(list(indices))

    def shutdown(self) -> None:
        self.shutdown_sent = True

    def tests(self) -> list[str]:
        return [TESTS[i] for batch in self.sent for i in batch]


def make_scheduler(workers: int) -> BoardScheduling:
    config = SimpleNamespace(
        getvalue=lambda name: [f"{workers}*popen"] if name == "tx" else None,
        option=SimpleNamespace(loadscopereorder=False),
    )

    def collected_by(worker_id: str) -> dict[str, TestBoard]:
        return {nodeid: TestBoard(board=nodeid[-6:-1], test=nodeid.split("[")[0]) for nodeid in TESTS}

    log: Any = SimpleNamespace(loadscopesched=lambda *args: None)
    return BoardScheduling(config, log, BOARDS, collected_by)  # type: ignore[arg-type]


def collect(sched: BoardScheduling, worker: FakeWorker) -> None:
    sched.add_node_collection(worker, TESTS)
    if sched.collection_is_completed:
        sched.schedule()


def complete(sched: BoardScheduling, worker: FakeWorker, count: int) -> None:
    """The worker reports its next ``count`` tests done, in order."""
    done = {nodeid for unit in sched.assigned_work[worker].values() for nodeid, ok in unit.items() if ok}
    for nodeid in [t for t in worker.tests() if t not in done][:count]:
        sched.mark_test_complete(worker, TESTS.index(nodeid))


def run_to_the_end(sched: BoardScheduling, *workers: FakeWorker) -> None:
    while not sched.tests_finished:  # each worker reports one test at a time
        for worker in workers:
            if worker in sched.assigned_work:
                complete(sched, worker, 1)


def test_each_board_goes_whole_to_one_worker_in_order() -> None:
    sched = make_scheduler(2)
    gw0, gw1 = FakeWorker("gw0"), FakeWorker("gw1")
    for worker in (gw0, gw1):
        sched.add_node(worker)
    collect(sched, gw0)
    assert not gw0.sent  # xdist's rule: no test before every worker has collected
    collect(sched, gw1)
    run_to_the_end(sched, gw0, gw1)
    assert sorted(gw0.tests() + gw1.tests()) == sorted(TESTS)
    for board in BOARDS:
        ran_by = [w for w in (gw0, gw1) if any(t.endswith(f"[{board}]") for t in w.tests())]
        assert len(ran_by) == 1  # one worker per board
        assert [t for t in ran_by[0].tests() if t.endswith(f"[{board}]")] == [
            t for t in TESTS if t.endswith(f"[{board}]")
        ]


def test_the_test_that_crashed_its_worker_is_not_run_again_and_its_board_goes_on() -> None:
    """xdist's loadscope queues the crashed test again, and each replacement worker crashes
    on it until the crash limit stops the run: the board's later tests never run."""
    sched = make_scheduler(2)
    gw0, gw1 = FakeWorker("gw0"), FakeWorker("gw1")
    for worker in (gw0, gw1):
        sched.add_node(worker)
    collect(sched, gw0)
    collect(sched, gw1)
    first_board = gw0.tests()[0][-6:-1]
    complete(sched, gw0, 1)
    crashed = sched.remove_node(gw0)  # gw0 dies in its second test
    assert crashed == gw0.tests()[1]
    gw2 = FakeWorker("gw2")  # xdist's replacement
    sched.add_node(gw2)
    collect(sched, gw2)
    run_to_the_end(sched, gw1, gw2)
    rest = gw1.tests() + gw2.tests()
    assert crashed not in rest
    assert sorted(rest + gw0.tests()[:1] + [crashed]) == sorted(TESTS)
    assert [t for t in TESTS if t.endswith(f"[{first_board}]")][2:] in (
        [t for t in w.tests() if t.endswith(f"[{first_board}]")] for w in (gw1, gw2)
    )


def test_a_worker_that_crashed_before_collecting_is_replaced_not_dropped() -> None:
    """-n 1, its worker crashing in its collection: xdist starts a replacement, but the run
    ended at once ("no tests ran", nothing run): the crashed worker was no longer counted, so
    a collection from no worker was complete, and with nothing in it the tests were finished."""
    sched = make_scheduler(1)
    gw0 = FakeWorker("gw0")
    sched.add_node(gw0)
    assert sched.remove_node(gw0) is None
    assert not sched.tests_finished
    gw1 = FakeWorker("gw1")  # xdist's replacement
    sched.add_node(gw1)
    collect(sched, gw1)
    run_to_the_end(sched, gw1)
    assert sorted(gw1.tests()) == sorted(TESTS)


def test_a_worker_that_ended_before_collecting_is_not_waited_for() -> None:
    """pytest.exit() in its collection: it finished (its workeroutput came), nobody replaces it."""
    sched = make_scheduler(2)
    gw0, gw1 = FakeWorker("gw0"), FakeWorker("gw1")
    for worker in (gw0, gw1):
        sched.add_node(worker)
    gw1.workeroutput = {"exitstatus": 0}  # type: ignore[attr-defined]
    assert sched.remove_node(gw1) is None
    collect(sched, gw0)
    run_to_the_end(sched, gw0)
    assert sorted(gw0.tests()) == sorted(TESTS)
