"""firmware/counter.py run by the MicroPython unix port: never back, one write per block.

Each test runs one MicroPython script in its own temporary folder, with the firmware modules
on MICROPYPATH.
"""

from node_harness import run_micropython

# Wraps the counter module's open() so a script can count the writes that reach flash.
PRELUDE = """
import os
import micropython
import counter
from counter import BLOCK, Counter, CounterExhausted

writes = []
_real_open = open

def counting_open(path, mode="r"):
    if "w" in mode or "a" in mode:
        writes.append(path)
    return _real_open(path, mode)

counter.open = counting_open

def read(path):
    with _real_open(path) as f:
        return f.read()
"""


def run(tmp_path, body):
    result = run_micropython(PRELUDE + body + "\nprint('PASS')\n", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.strip().endswith("PASS"), output


def test_counter_starts_at_one(tmp_path):
    run(
        tmp_path,
        """
c = Counter("counter.dat")
assert c.next() == 1
assert c.next() == 2
assert int(read("counter.dat")) == 1 + BLOCK
""",
    )


def test_counter_one_flash_write_per_block(tmp_path):
    run(
        tmp_path,
        """
c = Counter("counter.dat")
values = [c.next() for _ in range(10 * BLOCK)]
assert values == list(range(1, 10 * BLOCK + 1))
# One reservation at start, then one each time a block runs out.
assert len(writes) == 10, writes
assert c.reservations == 10
assert all(path == "counter.dat.tmp" for path in writes), writes
""",
    )


def test_counter_never_back_across_reboots(tmp_path):
    # Each Counter() is a boot; a boot after using some values skips at most the rest of a block.
    run(
        tmp_path,
        """
last = 0
previous_limit = None
for used in (0, 1, 5, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK, 0, 2):
    c = Counter("counter.dat")
    first = c.value
    assert first > last, (used, first, last)
    # A boot starts at the bound the previous one reserved, so it skips at most one block.
    if previous_limit is not None:
        assert first == previous_limit, (used, first, previous_limit)
    assert first - last - 1 <= BLOCK, (used, first, last)
    for _ in range(used):
        value = c.next()
        assert value > last
        last = value
    previous_limit = c.limit
""",
    )


def test_counter_cut_before_rename(tmp_path):
    # A power cut after the temporary file was written but before the rename: its bound may
    # already be in use, so the next boot starts above it.
    run(
        tmp_path,
        """
with open("counter.dat", "w") as f:
    f.write("65")
with open("counter.dat.tmp", "w") as f:
    f.write("129")
c = Counter("counter.dat")
assert c.next() == 129, c.value
assert int(read("counter.dat")) == 129 + BLOCK
""",
    )


def test_counter_unreadable_file_uses_floor(tmp_path):
    run(
        tmp_path,
        """
with open("counter.dat", "wb") as f:
    f.write(b"\\xff\\xfe\\x00garbage")
c = Counter("counter.dat", floor=500)
assert c.recovered
assert c.next() == 500
fresh = Counter("other.dat")
assert not fresh.recovered
""",
    )


def test_counter_floor_above_file(tmp_path):
    run(
        tmp_path,
        """
with open("counter.dat", "w") as f:
    f.write("10")
assert Counter("counter.dat", floor=300).next() == 300
assert Counter("counter.dat", floor=2).next() == 300 + BLOCK
""",
    )


def test_counter_exhausted_at_u32_end(tmp_path):
    run(
        tmp_path,
        """
with open("counter.dat", "w") as f:
    f.write(str(0xFFFFFFFF - BLOCK + 1))
c = Counter("counter.dat")
last = None
for _ in range(BLOCK):
    last = c.next()
assert last == 0xFFFFFFFF, last
try:
    c.next()
except CounterExhausted:
    pass
else:
    raise AssertionError("a counter past 2**32 - 1 must raise CounterExhausted")
try:
    Counter("counter.dat")
except CounterExhausted:
    pass
else:
    raise AssertionError("a boot with the counter space used up must raise CounterExhausted")
""",
    )


def test_counter_next_allocates_nothing(tmp_path):
    # Inside a reserved block next() runs with the heap locked, as on a hot path.
    run(
        tmp_path,
        """
c = Counter("counter.dat")
c.next()
micropython.heap_lock()
try:
    for _ in range(BLOCK - 2):
        c.next()
finally:
    micropython.heap_unlock()
assert c.value == BLOCK
""",
    )
