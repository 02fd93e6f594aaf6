"""The RFC 2217 client's telnet layer (pure logic; tests/test_labgrid.py and
tests/test_serial.py run it against ser2net)."""

from __future__ import annotations

import socket
import struct

from pytest_boardfarm import telnet
from pytest_boardfarm.telnet import DO, DONT, IAC, SB, SE, WILL, WONT, TelnetDecoder
from pytest_boardfarm.transport import Rfc2217Transport


def test_data_0xff_is_doubled_on_the_wire_and_undoubled_on_the_way_back() -> None:
    assert telnet.escape(b"a\xffb\xff\xff") == b"a\xff\xffb\xff\xff\xff\xff"
    decoder = TelnetDecoder()
    assert decoder.feed(telnet.escape(bytes(range(256)))) == bytes(range(256))


def test_commands_split_across_reads_are_stripped() -> None:
    decoder = TelnetDecoder()
    wire = b"ab" + bytes([IAC, SB, 44, 107, 0x30, IAC, IAC, IAC, SE]) + b"cd" + bytes([IAC, IAC]) + b"e"
    out = b"".join(decoder.feed(wire[i : i + 1]) for i in range(len(wire)))
    assert out == b"abcd\xffe"
    assert not decoder.replies  # a sub-negotiation needs no answer


def test_negotiation_is_answered_once_and_unknown_options_refused() -> None:
    decoder = TelnetDecoder()
    for verb, option in telnet.OPENING_OPTIONS:
        decoder.sent(verb, option)
    decoder.feed(bytes([IAC, DO, telnet.BINARY, IAC, WILL, telnet.BINARY, IAC, DO, 44]))
    assert decoder.replies == b""  # what we announced, confirmed: nothing to say
    decoder.feed(bytes([IAC, DO, 24, IAC, WILL, 1, IAC, WILL, 1]))  # terminal type, echo (twice)
    assert bytes(decoder.replies) == bytes([IAC, WONT, 24, IAC, DONT, 1])


def test_opening_sets_baud_rate_and_lines() -> None:
    wire = telnet.opening(115200, dtr=True, rts=False)
    assert bytes([IAC, SB, 44, telnet.SET_BAUDRATE]) + struct.pack(">I", 115200) + bytes([IAC, SE]) in wire
    assert bytes([IAC, SB, 44, telnet.SET_CONTROL, telnet.DTR_ON, IAC, SE]) in wire
    assert bytes([IAC, SB, 44, telnet.SET_CONTROL, telnet.RTS_OFF, IAC, SE]) in wire


def test_rfc2217_transport_escapes_and_pulses_the_lines_on_the_wire() -> None:
    """What Rfc2217Transport puts on the wire, read by a bare TCP server: data escaped, and an
    RTS reset pulse as COM-PORT-OPTION requests (DTR off, RTS on; RTS off; both back on)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    transport = Rfc2217Transport(f"rfc2217://127.0.0.1:{port}?ign_set_control", dtr=True, rts=True)
    conn, _ = server.accept()
    opening = telnet.opening(115200, dtr=True, rts=True)
    transport.write(b"a\xffb")
    transport.pulse_reset(0.01)
    conn.sendall(bytes([IAC, DO, telnet.BINARY]) + b"x\xff\xffy")  # an option, then data with an escaped 0xFF
    assert transport.read(5) == b"x\xffy"
    transport.close()
    wire = b""
    while chunk := conn.recv(4096):
        wire += chunk
    conn.close()
    server.close()
    lines = [telnet.control(dtr=False, rts=True), telnet.control(rts=False), telnet.control(dtr=True, rts=True)]
    assert wire == opening + b"a\xff\xffb" + b"".join(lines)
