"""A small RFC 2217 (serial over telnet) client: the bytes layer for ``rfc2217://``.

pyserial's own RFC 2217 client waits for the server to confirm each setting
as it opens (~0.5 s against ser2net here), times out setting DTR/RTS on a
server that cannot (ser2net in front of a pty), and refuses a write timeout.
This one sends its telnet options and COM-PORT-OPTION settings in order
ahead of the first data and never waits for an answer: a server handles a
TCP stream in order, so by the time our data arrives it has seen them. What
the server sends back is parsed out of the data stream (IAC sequences
stripped, IAC IAC unescaped); a byte 0xFF we send is escaped as IAC IAC.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
BINARY, SGA, COM_PORT_OPTION = 0, 3, 44
SET_BAUDRATE, SET_DATASIZE, SET_PARITY, SET_STOPSIZE, SET_CONTROL = 1, 2, 3, 4, 5
PARITY_NONE, STOPSIZE_1, NO_FLOW_CONTROL = 1, 1, 1
DTR_ON, DTR_OFF, RTS_ON, RTS_OFF = 8, 9, 11, 12

OPENING_OPTIONS = ((WILL, BINARY), (DO, BINARY), (WILL, SGA), (DO, SGA), (WILL, COM_PORT_OPTION))
_WE_DO = {BINARY, SGA, COM_PORT_OPTION}  # options we agree to perform (answer DO with WILL)
_THEY_MAY = {BINARY, SGA}  # options we agree the server performs (answer WILL with DO)


def escape(data: bytes) -> bytes:
    """Data as it goes on the wire: every 0xFF doubled."""
    return data.replace(b"\xff", b"\xff\xff")


def subnegotiation(command: int, value: bytes) -> bytes:
    """A COM-PORT-OPTION request (RFC 2217 section 3), its value escaped."""
    return bytes([IAC, SB, COM_PORT_OPTION, command]) + escape(value) + bytes([IAC, SE])


def opening(baudrate: int, *, dtr: bool, rts: bool) -> bytes:
    """What a client sends first: binary both ways, no go-ahead, COM-PORT-OPTION,
    then the line settings (8N1, no flow control) and the modem lines."""
    return (
        b"".join(bytes([IAC, verb, option]) for verb, option in OPENING_OPTIONS)
        + subnegotiation(SET_BAUDRATE, struct.pack(">I", baudrate))
        + subnegotiation(SET_DATASIZE, bytes([8]))
        + subnegotiation(SET_PARITY, bytes([PARITY_NONE]))
        + subnegotiation(SET_STOPSIZE, bytes([STOPSIZE_1]))
        + subnegotiation(SET_CONTROL, bytes([NO_FLOW_CONTROL]))
        + control(dtr=dtr, rts=rts)
    )


def control(*, dtr: bool | None = None, rts: bool | None = None) -> bytes:
    """Requests to set DTR and/or RTS (None: leave the line alone)."""
    out = b""
    if dtr is not None:
        out += subnegotiation(SET_CONTROL, bytes([DTR_ON if dtr else DTR_OFF]))
    if rts is not None:
        out += subnegotiation(SET_CONTROL, bytes([RTS_ON if rts else RTS_OFF]))
    return out


@dataclass
class TelnetDecoder:
    """Splits what the server sends into data and telnet commands, across reads.

    ``feed`` returns the data bytes; answers owed to the server (option
    negotiation) collect in ``replies`` for the caller to send. Sub-negotiations
    (the server's confirmations and line/modem state notices) are dropped: this
    client never waits on them.
    """

    replies: bytearray = field(default_factory=bytearray)
    heard: bool = False  # the server sent a telnet command (an RFC 2217 server negotiates at once)
    _state: str = "data"
    _verb: int = 0
    _agreed: set[tuple[int, int]] = field(default_factory=set)  # (verb we sent, option)

    def feed(self, chunk: bytes) -> bytes:
        data = bytearray()
        for byte in chunk:
            if self._state == "data":
                if byte == IAC:
                    self._state = "iac"
                else:
                    data.append(byte)
            elif self._state == "iac":
                self.heard = self.heard or byte != IAC
                if byte == IAC:
                    data.append(IAC)
                    self._state = "data"
                elif byte in (DO, DONT, WILL, WONT):
                    self._verb, self._state = byte, "option"
                elif byte == SB:
                    self._state = "sb"
                else:  # NOP, GA and other two-byte commands
                    self._state = "data"
            elif self._state == "option":
                self._answer(self._verb, byte)
                self._state = "data"
            elif self._state == "sb":
                self._state = "sb-iac" if byte == IAC else "sb"
            elif self._state == "sb-iac":
                self._state = "data" if byte == SE else "sb"  # IAC IAC inside: an escaped 0xFF
        return bytes(data)

    def _answer(self, verb: int, option: int) -> None:
        """Reply once per change of state (RFC 1143's rule against negotiation loops)."""
        if verb == DO:
            reply = WILL if option in _WE_DO else WONT
        elif verb == WILL:
            reply = DO if option in _THEY_MAY else DONT
        elif verb == DONT:
            reply = WONT
        else:
            reply = DONT
        if (reply, option) in self._agreed:
            return
        self._agreed.discard(({WILL: WONT, WONT: WILL, DO: DONT, DONT: DO}[reply], option))
        self._agreed.add((reply, option))
        self.replies += bytes([IAC, reply, option])

    def sent(self, verb: int, option: int) -> None:
        """Record an option we announced ourselves, so the server's echo gets no reply."""
        self._agreed.add((verb, option))
