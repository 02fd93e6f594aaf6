"""Device tests' host-side logic: assert rewriting, module parsing, traceback mapping.

The board-side runner (firmware_helpers/bf_devtest.py) is plain Python too, so the
rewritten asserts are run here against its real _bf_c/_bf_v; that they also run on
MicroPython 1.9 is shown on the emulated micro:bit in test_devicetests.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_boardfarm import helper_sources
from pytest_boardfarm.devassert import OPERATORS, rewrite
from pytest_boardfarm.devmodule import DeviceSourceError, failed_line, parse
from pytest_boardfarm.devrunner import describe_failure


def runner() -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(helper_sources.source("bf_devtest.py"), namespace)
    return namespace


def fails_with(source: str) -> tuple[Any, str | None]:
    """Run a rewritten assert with the board's helpers; what _bf_e recorded and the explanation."""
    rewritten = rewrite(source)
    namespace = runner()
    with pytest.raises(AssertionError):
        exec(rewritten.source, namespace)
    record = namespace["_bf_e"]
    return record, rewritten.explain(record, 1)


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("assert 1 + 2 == 4", "assert 3 == 4"),
        ("assert 'a' != 'a'", "assert 'a' != 'a'"),
        ("assert 5 < 2", "assert 5 < 2"),
        ("assert 5 <= 2", "assert 5 <= 2"),
        ("assert 1 > 2", "assert 1 > 2"),
        ("assert 1 >= 2", "assert 1 >= 2"),
        ("assert 5 in [1, 2]", "assert 5 in [1, 2]"),
        ("assert 1 not in (1,)", "assert 1 not in (1,)"),
        ("assert None is 0", "assert None is 0"),
        ("assert None is not None", "assert None is not None"),
        ("assert len([])", "assert 0"),
        ("x = {}\nassert x.get('k')", "assert None"),
    ],
)
def test_failed_asserts_show_both_sides(source: str, shown: str) -> None:
    lines = source.splitlines()
    record, explained = fails_with(source)
    assert record[0] == len(lines)
    assert rewrite(source).explain(record, len(lines)) == shown


def test_every_operator_has_its_place_in_the_runner() -> None:
    body = helper_sources.functions("bf_devtest.py")["_bf_c"]
    for index, (_, text) in enumerate(OPERATORS[:-1]):
        assert f"o == {index}:\n  r = a {text} b" in body
    assert f"else:\n  r = a {OPERATORS[-1][1]} b" in body


def test_passing_asserts_pass_and_record_nothing() -> None:
    namespace = runner()
    exec(rewrite("assert 1 == 1\nassert [1]\nassert 2 in (1, 2)").source, namespace)
    assert namespace["_bf_e"] is None


def test_message_stays_lazy_and_shown() -> None:
    rewritten = rewrite("calls = []\nassert 1 == 1, calls.append('evaluated')\nassert 1 == 2, 'one is not two'")
    namespace = runner()
    with pytest.raises(AssertionError, match="one is not two"):
        exec(rewritten.source, namespace)
    assert namespace["calls"] == []
    assert rewritten.explain(namespace["_bf_e"], 3) == "assert 1 == 2"


def test_line_numbers_survive_multi_line_asserts() -> None:
    source = "def f():\n    assert (1 +\n        2) == (\n        4\n    ), (\n 'msg')\n    return 'after'\n"
    rewritten = rewrite(source)
    assert rewritten.source.count("\n") == source.count("\n")
    assert rewritten.source.splitlines()[6] == "    return 'after'"
    assert "_bf_c(" in rewritten.source
    record, _ = fails_with(source + "f()\n")
    assert rewritten.explain(record, 4) == "assert 3 == 4"  # any line of the assert


def test_rewriting_keeps_non_ascii_text_in_place() -> None:
    rewritten = rewrite("assert 'é' == 'ü' + 'x'  # ä\n")
    assert rewritten.source == "assert _bf_c('é', 'ü' + 'x', 0, 1)  # ä\n"


def test_other_asserts_are_left_alone() -> None:
    source = "assert a < b < c\nassert x and y\nassert not z\n"
    assert rewrite(source).source == source


def test_a_stale_record_does_not_explain_another_assert() -> None:
    rewritten = rewrite("assert 1 == 2\nassert x and y\n")
    assert rewritten.explain((1, "1", "2"), 2) is None
    assert rewritten.explain(None, 1) is None
    assert rewritten.explain((1, "1", "2"), None) is None


MODULE = """\
import gc
# a comment line, sent empty
boardfarm = {"platform": "microbit", "tags": ["fast"], "timeout": 5}

def helper(x):
    return x * 2

def test_one():
    assert helper(1) == 3

s = '''
# not a comment
'''

@decorated
def test_two():
    pass

def setup():
    pass
"""


def test_module_is_cut_into_prelude_and_tests() -> None:
    source = parse("tests/device/test_m.py", MODULE)
    assert source.selection == {"platform": "microbit", "tags": ["fast"], "timeout": 5}
    assert list(source.tests) == ["test_one", "test_two"]
    assert source.tests["test_one"].first == 8
    assert source.tests["test_two"].first == 15  # the decorator's line
    assert source.defines == {"setup"}
    assert all("boardfarm" not in c.source for c in source.prelude)  # read on the host, never sent
    assert source.prelude[0].source == "import gc"  # the selection literal parts it from the next statements
    assert "a comment line" not in "".join(c.source for c in source.prelude)
    assert "# not a comment" in "".join(c.source for c in source.prelude)
    assert source.owner("helper") is not None and source.owner("helper").first == 5  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("boardfarm = dict(platform='x')\n", "test_x.py:1: boardfarm must be a literal dict"),
        ("\nboardfarm = ['x']\n", "test_x.py:2: boardfarm must be a dict with string keys, got list"),
        (
            "boardfarm = {'platfrom': 'x'}\n",
            "test_x.py:1: boardfarm: unknown argument 'platfrom' (did you mean 'platform'?)",
        ),
        ("boardfarm = {'timeout': -1}\n", "test_x.py:1: boardfarm: timeout=-1: expected"),
        ("def test_a(board):\n    pass\n", "test_x.py:1: device test test_a() must take no arguments"),
        ("def test_a(:\n", "test_x.py:1: "),
    ],
)
def test_bad_modules_say_file_line_and_what(text: str, message: str) -> None:
    with pytest.raises(DeviceSourceError) as info:
        parse("test_x.py", text)
    assert str(info.value).startswith(message)


def test_tracebacks_name_the_users_file_and_lines() -> None:
    source = parse("tests/device/test_m.py", MODULE)
    board_says = (
        "Traceback (most recent call last):\n"
        '  File "<stdin>", line 1, in <module>\n'
        '  File "<string>", line 16, in _bf_t\n'
        '  File "<stdin>", line 2, in test_one\n'
        '  File "<string>", line 2, in helper\n'
        '  File "main.py", line 3, in boot\n'
        "ZeroDivisionError: division by zero\n"
    )
    mapped = source.traceback(board_says, source.tests["test_one"], keep_module_frame=False)
    assert mapped == (
        "Traceback (most recent call last):\n"
        '  File "tests/device/test_m.py", line 9, in test_one\n'
        '  File "tests/device/test_m.py", line 6, in helper\n'
        '  File "main.py", line 3, in boot\n'
        "ZeroDivisionError: division by zero\n"
    )
    assert failed_line(mapped, "tests/device/test_m.py") == 6
    shown = describe_failure("sim-1", mapped, "tests/device/test_m.py", MODULE.splitlines())
    assert shown.splitlines()[0] == "ZeroDivisionError: division by zero"
    assert "line 6, in helper\n    return x * 2\n" in shown


def test_module_level_code_keeps_its_own_frame_only() -> None:
    source = parse("t.py", "import gc\nx = 1\ny = 1 / 0\n")
    staged = (
        'Traceback (most recent call last):\n  File "<stdin>", line 2, in <module>\n'
        '  File "<stdin>", line 1, in <module>\n  File "<string>", line 3, in <module>\nZeroDivisionError: x\n'
    )
    mapped = source.traceback(staged, source.prelude[0], keep_module_frame=True)
    assert mapped.splitlines()[1:] == ['  File "t.py", line 3, in <module>', "ZeroDivisionError: x"]


@pytest.mark.parametrize(
    ("board_says", "frame"),
    [
        ('  File "<stdin>", line 3\n', '  File "t.py", line 6'),  # sent whole
        (  # staged: exec() of the collected source
            '  File "<stdin>", line 2, in <module>\n  File "<stdin>", line 1, in <module>\n  File "<string>", line 3\n',
            '  File "t.py", line 6',
        ),
        (  # the test's own exec() of a bad string: the board's frame for it stays
            '  File "<stdin>", line 1, in <module>\n  File "<stdin>", line 16, in _bf_t\n'
            '  File "<stdin>", line 3, in test_b\n  File "<string>", line 1\n',
            '  File "t.py", line 6, in test_b\n  File "<string>", line 1',
        ),
    ],
    ids=["sent-whole", "staged", "own-exec"],
)
def test_a_syntax_error_the_board_found_names_the_users_line(board_says: str, frame: str) -> None:
    source = parse("t.py", "def test_a():\n    pass\n\ndef test_b():\n    x = 1\n    return f'{x}'\n")
    text = f"Traceback (most recent call last):\n{board_says}SyntaxError: invalid syntax\n"
    defining = "_bf_t" not in board_says  # the def sent, or the test run (runner.run's two steps)
    mapped = source.traceback(text, source.tests["test_b"], keep_module_frame=defining)
    assert mapped == f"Traceback (most recent call last):\n{frame}\nSyntaxError: invalid syntax\n"


def test_a_users_message_is_kept_and_the_values_follow() -> None:
    traceback = 'Traceback (most recent call last):\n  File "t.py", line 1, in test_a\nAssertionError: too small\n'
    shown = describe_failure("sim-1", traceback, "t.py", ["assert n > 3, 'too small'"], "assert 2 > 3")
    assert shown.splitlines()[0] == "assert 2 > 3"
    assert shown.endswith("    assert n > 3, 'too small'\nAssertionError: too small\nassert 2 > 3")
