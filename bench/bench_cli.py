"""``boardfarm exec`` on 1 and on 4 boards, against mpremote doing the same.

What a person at a shell waits for: the whole command, process start included,
running the same code (``--work-ms`` of device work, then a print) on emulated
micro:bits behind ``socket://`` ports, as a farm's boards are listed in farm.yaml.

- boardfarm: one ``boardfarm exec`` for all the selected boards (locked, connected
  and run in parallel threads);
- mpremote: ``mpremote connect URL exec CODE`` once per board, one after the other
  (a shell loop) and all at once (``&``).

Median of ``--repeat`` runs. Prints figures only; asserts nothing.

    python bench/bench_cli.py [--repeat 5] [--work-ms 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pytest_boardfarm.emulators import start_many

BOARDS = 4


def wall(run: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.monotonic()
        run()
        times.append(time.monotonic() - started)
    return statistics.median(times)


def check(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise SystemExit(f"{proc.args!r} failed ({proc.returncode}): {(out + err).decode()[-400:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--work-ms", type=int, default=200)
    args = parser.parse_args()
    code = f"import microbit\nmicrobit.sleep({args.work_ms})\nprint('done')"
    mpremote = str(Path(sys.executable).with_name("mpremote"))
    boards = start_many(BOARDS)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            farm = Path(tmp) / "farm.yaml"
            lines = [f"locks: {{dir: {tmp}/locks}}", "boards:"]
            lines += [f"  - {{name: mb-{i}, port: '{b.url}'}}" for i, b in enumerate(boards)]
            farm.write_text("\n".join(lines) + "\n")

            def boardfarm(count: int) -> Callable[[], None]:
                select = [a for i in range(count) for a in ("--board", f"mb-{i}")]
                argv = [sys.executable, "-m", "pytest_boardfarm.cli", "exec", "--farm", str(farm), *select, code]
                return lambda: check([subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)])

            def mp(urls: list[str], together: bool) -> Callable[[], None]:
                def run() -> None:
                    procs = []
                    for url in urls:
                        argv = [mpremote, "connect", url, "exec", code]
                        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
                        if not together:
                            check([procs.pop()])
                    check(procs)

                return run

            urls = [b.url for b in boards]
            rows = [
                ("boardfarm exec, 1 board", wall(boardfarm(1), args.repeat)),
                (f"boardfarm exec, {BOARDS} boards", wall(boardfarm(BOARDS), args.repeat)),
                ("mpremote exec, 1 board", wall(mp(urls[:1], False), args.repeat)),
                (f"mpremote exec, {BOARDS} boards one by one", wall(mp(urls, False), args.repeat)),
                (f"mpremote exec, {BOARDS} boards at once (&)", wall(mp(urls, True), args.repeat)),
            ]
    finally:
        for board in boards:
            board.stop()
    print(f"device work per board: {args.work_ms} ms; median of {args.repeat} runs; whole commands")
    for label, seconds in rows:
        print(f"{label:<40} {seconds:6.2f} s")
    one, four = rows[0][1], rows[1][1]
    print(f"boardfarm: {BOARDS} boards / 1 board = {four / one:.2f}")


if __name__ == "__main__":
    main()
