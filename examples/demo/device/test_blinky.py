# Device tests: this file runs on the boards, never on the host (pytest only parses it).
# Each test function is one test per matching board; asserts show both sides on failure.
import blinky

boardfarm = {"tags": ["fast"]}  # like @pytest.mark.board(tags=["fast"]): sim-1 and sim-3


def setup():
    global DATA
    DATA = bytes(range(32))


def test_version():
    assert blinky.VERSION == "1.2.0"


def test_checksum_of_nothing():
    assert blinky.checksum(b"") == 0


def test_checksum_is_order_sensitive():
    assert blinky.checksum(DATA) != blinky.checksum(bytes(reversed(DATA)))


def test_display():
    try:
        from microbit import display
    except ImportError:
        raise SkipTest("no display on this board")
    display.show("A")
