"""Helpers shared by the hardware-in-the-loop suite (the fixtures come from baysense.hil.plugin)."""

import pytest

from baysense.hil.wait import hold

KINDS = ("ultrasonic", "magnetometer", "presence")


def each_sensor_kind(kinds=KINDS):
    """Parametrize a test over sensor kinds; the sensor marker makes the plugin pick a board of that kind."""
    return pytest.mark.parametrize("kind", [pytest.param(kind, marks=pytest.mark.sensor(kind)) for kind in kinds])


def wait_until_settled(board):
    """Wait for the node's first decision after boot, once the sensor has learned the empty bay.

    Only the magnetometer learns its baseline at start. A car placed before then would be
    learned as the empty bay's field, on a real bench as on a virtual board.
    """
    if board.kind == "magnetometer":
        board.expect(r"bay: first decision since boot", timeout_s=20)


def passer_by_seconds(board):
    """How long a passing car stays over the sensor: a fifth of the on-delay, well below it."""
    return board.definition["detector"]["on_delay_ms"] / 5000


def stay_parked(board):
    """Keep the car parked until a magnetometer's detector has taken its field as parked.

    The field detector follows a stopped car's field until the field has been quiet for
    off_delay_ms, because the car may still be manoeuvring. A car that left before then would
    count as part of the manoeuvre, so a real car, parked for minutes, never meets this case.
    """
    if board.kind == "magnetometer":
        hold(board.definition["detector"]["off_delay_ms"] / 1000 * 2)
