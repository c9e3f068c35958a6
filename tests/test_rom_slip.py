"""SLIP framing of the virtual ROM, checked on arbitrary payloads and chunkings."""

from hypothesis import given
from hypothesis import strategies as st

from baysense.rom import slip


@given(payloads=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=5), cut=st.integers(0, 2000))
def test_slip_decodes_any_split(payloads, cut):
    stream = b"".join(slip.encode(payload) for payload in payloads)
    decoder = slip.Decoder()
    frames = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
    assert frames == payloads


@given(payload=st.binary(max_size=300))
def test_slip_encoding_has_no_bare_end(payload):
    body = slip.encode(payload)[1:-1]
    assert b"\xc0" not in body
    assert body.replace(b"\xdb\xdc", b"").replace(b"\xdb\xdd", b"").count(b"\xdb") == 0


def test_slip_invalid_escape_reported():
    decoder = slip.Decoder()
    frames = decoder.feed(b"\xc0\x01\xdb\x02\xc0\xc0\x03\xc0")
    assert isinstance(frames[0], slip.SlipError)
    assert frames[1] == b"\x03"
