"""The file transfers that Device runs: frames, escaping, compression, receiver and reader.

Each file travels as a list of frames over the board's stdin while a receiver (RECEIVER_CODE)
runs in the raw REPL. The board sends ACK before it reads each frame, so the host never sends
more than the board has room for, and a frame is read in full before the board writes it.
A frame is one escaped block: either raw file bytes, or one raw-deflate stream of up to
DEFLATE_BLOCK file bytes that the board inflates with its `deflate` module (MicroPython 1.21
and later). Blocks are escaped one by one, so no escape pair spans two frames.
"""

import zlib

ACK = 0x06

# Max bytes of one escaped frame, which is the size of the board's receive buffer. Each frame
# costs one round trip, a few percent of a 4 KB frame's time at 115200 baud. With the copies
# the board makes while unescaping and inflating, a frame takes about 14 KB of heap (an
# estimate from the buffer sizes, not measured on an ESP32).
WRITE_FRAME = 4096

# Max file bytes per compressed frame. This repository's .mpy files compress to about 73 %,
# so 5 KB of them fit one 4 KB frame. A block that does not fit is split in two.
DEFLATE_BLOCK = 5120
# The deflate window (log2 bytes): 1 KB keeps the board's inflate state small, and a larger
# window gained under 1 % on this repository's firmware build.
DEFLATE_WBITS = 10
# Compression is used only when it saves at least this share of the bytes on the wire.
DEFLATE_MIN_SAVING = 0.1

ESCAPE = 0x10

# File bytes per base64 line that READER_CODE prints. A small chunk keeps each allocation on
# the board at about 1.4 KB, so a fragmented heap can still serve it.
READ_CHUNK = 1024

# Prints a file as base64 lines, reading into one buffer allocated once. Fill in with
# `% {"path": PATH, "chunk": READ_CHUNK}`.
READER_CODE = """import sys, binascii
f = open(%(path)r, 'rb')
try:
 buf = bytearray(%(chunk)d)
 mv = memoryview(buf)
 while True:
  n = f.readinto(buf)
  if not n:
   break
  sys.stdout.buffer.write(binascii.b2a_base64(mv[:n]))
finally:
 f.close()
"""

# Prints whether the board can inflate raw-deflate streams.
INFLATE_PROBE = b"""try:
 import deflate
 print(hasattr(deflate, 'DeflateIO'))
except ImportError:
 print(False)
"""

# The board side. For every (path, frame lengths, window bits or 0), it creates the folders and
# opens PATH.part. For each frame it sends ACK, reads the frame, unescapes it and writes it,
# inflated when the window bits are not 0. A complete file is renamed over PATH, and a failed
# one is removed before the exception reaches the host. Single-space indents keep the code
# short on the wire.
RECEIVER_CODE = b"""import sys, os, io
def _bs_put(files, size):
 rd = sys.stdin.buffer.readinto
 wr = sys.stdout.buffer.write
 buf = bytearray(size)
 mv = memoryview(buf)
 out = bytearray(1024)
 om = memoryview(out)
 for path, frames, z in files:
  part = path + '.part'
  d = ''
  for p in path.split('/')[1:-1]:
   d += '/' + p
   try:
    os.mkdir(d)
   except OSError:
    pass
  f = open(part, 'wb')
  try:
   for n in frames:
    wr(b'\\x06')
    got = 0
    while got < n:
     got += rd(mv[got:n])
    c = bytes(mv[:n]).replace(b'\\x101', b'\\x03').replace(b'\\x100', b'\\x10')
    if z:
     import deflate
     s = deflate.DeflateIO(io.BytesIO(c), deflate.RAW, z)
     while True:
      k = s.readinto(out)
      if not k:
       break
      f.write(om[:k])
    else:
     f.write(c)
  except BaseException:
   f.close()
   os.remove(part)
   raise
  f.close()
  os.rename(part, path)
"""


def escape(data):
    """Escape the bytes that must not reach the board's stdin as they are.

    Ctrl-C (0x03) interrupts running code on an ESP32 (and on the virtual board), so it is sent
    as the escape byte 0x10 followed by '1', and 0x10 itself as 0x10 '0'. Every other byte
    passes unchanged: the firmware's .mpy files grew by about 2 % (measured on this
    repository's build), where base64 adds 33 %.
    """
    return data.replace(b"\x10", b"\x100").replace(b"\x03", b"\x101")


def unescape(data):
    """Reverse escape(); the board runs the same two replacements in RECEIVER_CODE."""
    return data.replace(b"\x101", b"\x03").replace(b"\x100", b"\x10")


def raw_frames(data):
    """Split data into escaped frames of at most WRITE_FRAME bytes each."""
    frames = []
    start = 0
    while start < len(data):
        length = WRITE_FRAME
        frame = escape(data[start : start + length])
        while len(frame) > WRITE_FRAME:
            # Each dropped byte shortens the frame by one or two, so dropping half the excess
            # (rounded up) never drops more than needed.
            length -= (len(frame) - WRITE_FRAME + 1) // 2
            frame = escape(data[start : start + length])
        frames.append(frame)
        start += length
    return frames


def deflate_frames(data):
    """Split data into blocks, each compressed to one raw-deflate stream and escaped."""
    frames = []
    start = 0
    while start < len(data):
        length = DEFLATE_BLOCK
        while True:
            compressor = zlib.compressobj(9, zlib.DEFLATED, -DEFLATE_WBITS)
            frame = escape(compressor.compress(data[start : start + length]) + compressor.flush())
            if len(frame) <= WRITE_FRAME:
                break
            length //= 2
        frames.append(frame)
        start += length
    return frames


def file_frames(data, can_inflate):
    """Return (escaped frames, window bits or 0) for one file, compressed when it pays."""
    plain = raw_frames(data)
    if not can_inflate or not data:
        return plain, 0
    compressed = deflate_frames(data)
    plain_size = sum(len(frame) for frame in plain)
    if sum(len(frame) for frame in compressed) <= plain_size * (1 - DEFLATE_MIN_SAVING):
        return compressed, DEFLATE_WBITS
    return plain, 0
