"""Parking scenarios for virtual boards: what happens over a bay, step by step.

A scenario is a list of Steps, each holding the simulated world for a duration. It is played
on a board's stimulus channel, and expected_changes() lists the state changes a correct node
reports, so a demo or test can compare what was played with what the gateway received.
"""

import random
import time
from dataclasses import dataclass, field

EMPTY_MM = 2600  # an empty bay: the ranger measures the distance to the ground


@dataclass
class Step:
    what: str  # "empty", "car" or "passer-by"
    seconds: float
    distance_mm: int
    world: dict = field(default_factory=dict)  # other stimulus keys for this step


@dataclass
class Scenario:
    bay: str
    steps: list

    def expected_changes(self):
        """Return the states a correct node reports, in order ("occupied"/"vacant")."""
        changes = []
        state = "vacant"
        for step in self.steps:
            if step.what == "car":
                expected = "occupied"
            elif step.what == "empty":
                expected = "vacant"
            else:
                continue  # a passer-by changes nothing
            if expected != state:
                changes.append(expected)
                state = expected
        return changes

    @property
    def seconds(self):
        return sum(step.seconds for step in self.steps)

    def play(self, stimulus, on_step=None, stop=None):
        """Drive a board's stimulus through every step; return when done or when stop is set."""
        for index, step in enumerate(self.steps):
            stimulus.set(distance_mm=step.distance_mm, **step.world)
            if on_step:
                on_step(self, index, step)
            deadline = time.monotonic() + step.seconds
            while time.monotonic() < deadline:
                if stop is not None and stop.is_set():
                    return
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def parking_scenario(bay, detector, seed):
    """Two cars park and leave, with a passer-by and sensor noise between them.

    Durations follow the board's detector settings: a car stays well past the on delay, an
    empty bay well past the off delay, and the passer-by leaves before the on delay ends.
    """
    rng = random.Random(seed)
    on_s = detector.get("on_delay_ms", 2000) / 1000
    off_s = detector.get("off_delay_ms", 3000) / 1000
    noise = {"distance_noise_mm": 15, "drop_edge_rate": 0.03}

    def car():
        return Step("car", on_s + 4 + rng.uniform(0, 3), rng.randint(700, 1200), noise)

    def empty(extra=0.0):
        return Step("empty", off_s + 3 + extra + rng.uniform(0, 2), EMPTY_MM, noise)

    steps = [
        Step("empty", 1 + rng.uniform(0, 2), EMPTY_MM, noise),
        car(),
        empty(),
        # Someone walks through the bay: closer than the occupied threshold, but only briefly.
        Step("passer-by", on_s * 0.3, rng.randint(900, 1300), noise),
        empty(),
        car(),
        empty(extra=1),
    ]
    return Scenario(bay, steps)
