"""SLIP framing (RFC 1055) as the ESP ROM loader uses it: every packet is wrapped in 0xC0."""

END = 0xC0
ESC = 0xDB
ESC_END = 0xDC
ESC_ESC = 0xDD


class SlipError(ValueError):
    """A frame with an escape byte followed by anything but ESC_END or ESC_ESC."""


def encode(payload):
    """Return `payload` escaped and wrapped in END bytes, ready for the wire."""
    body = bytes(payload).replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + body + b"\xc0"


class Decoder:
    """Incremental SLIP decoder: feed it bytes as they arrive, get whole frames back.

    Bytes outside a frame (line noise between packets) are skipped. A frame with an invalid
    escape is returned as a SlipError in the list, so the caller can log it and go on with the
    next frame.
    """

    def __init__(self):
        self._frame = None
        self._escaped = False
        self._invalid = False

    def feed(self, data):
        frames = []
        for byte in data:
            if self._frame is None:
                if byte == END:
                    self._start()
                continue

            if byte == END:
                if not self._frame and not self._invalid:
                    # Two END bytes in a row: the second opens the next frame.
                    continue
                if self._invalid:
                    frames.append(SlipError("invalid SLIP escape in frame"))
                else:
                    frames.append(bytes(self._frame))
                self._frame = None
                continue

            if self._escaped:
                self._escaped = False
                if byte == ESC_END:
                    self._frame.append(END)
                elif byte == ESC_ESC:
                    self._frame.append(ESC)
                else:
                    self._invalid = True
            elif byte == ESC:
                self._escaped = True
            else:
                self._frame.append(byte)
        return frames

    def _start(self):
        self._frame = bytearray()
        self._escaped = False
        self._invalid = False
