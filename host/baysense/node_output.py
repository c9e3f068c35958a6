"""The error lines a node prints when it stops at start, and the line of them that names the failure.

The HIL strategy and the restart step of `fleet provision` both read them. This is a module of
its own so that the fleet need not import hil/strategy.py, which imports esptool.
"""

import re

NODE_FAILED = re.compile(r"^(node: .*|Traceback \(most recent call last\):)$", re.MULTILINE)


def failure_line(text, failed):
    # For a traceback, the exception line: the first unindented line after the header.
    if not failed.group(0).startswith("Traceback"):
        return failed.group(0)
    for line in text[failed.end() :].splitlines():
        if line and not line[0].isspace():
            return line
    return failed.group(0)
