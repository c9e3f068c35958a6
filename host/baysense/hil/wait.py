"""Waits on conditions with a bounded timeout, failing with the board's last output."""

import time

from ..errors import BaysenseError

# How often a condition is checked (seconds): well under the node's 100 ms sample period on
# the virtual boards, and cheap enough for a SQLite query or a regex over the serial output.
POLL_S = 0.05


class ExpectationTimeout(BaysenseError, AssertionError):
    """A condition a test waited for did not come true in time.

    It is an AssertionError as well, so pytest reports it as a failed expectation. The hint
    carries the last output of the boards involved and the paths of their logs.
    """


def wait_until(probe, timeout_s, what, evidence=()):
    """Call probe() until it returns a true value and return that value.

    `evidence` are objects with describe() (boards, usually): on timeout their text goes into
    the error, so a failed wait shows what the board printed and where its full log is.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            details = "\n".join(item.describe() for item in evidence)
            raise ExpectationTimeout("timed out after %.1f s waiting for %s" % (timeout_s, what), details or None)
        time.sleep(POLL_S)


def hold(seconds):
    """Keep a stimulus in place for `seconds`: the length of a simulated event, not a wait.

    A car passing by lasts a given time whatever the board does, so this is the one place
    where the suite sleeps for a fixed time.
    """
    time.sleep(seconds)
