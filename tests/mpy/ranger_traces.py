"""Synthetic ultrasonic recordings with known truth: a ranger above a bay, vehicles under it.

Shared by tests/test_detector.py (CPython) and tests/test_detector_mpy.py (MicroPython).

What the numbers model, and why they are realistic for an HC-SR04 or a JSN-SR04T:

- One sample every 250 ms, as boards/esp32-devkitc-hcsr04.json sets it: the median of 5 pings
  60 ms apart. The HC-SR04 needs about 60 ms between pings for the last echo to die out.
- Readings in whole mm: firmware/ranger.py converts the echo width in µs with integer
  arithmetic, at 0.17 mm per µs, so the reading itself is finer than the noise.
- Noise uniform within +-noise_mm: 6 mm by default, an assumed figure for the median of 5
  pings off a flat floor, and 15 mm for the coarser waterproof JSN-SR04T.
- The sensor 2600 mm above the floor. A car's body is 600 to 1450 mm high, so its flat parts
  read 1150 to 2000 mm. Its sloped bonnet and glass reflect the sound away from the sensor,
  so the ranger then hears the floor beside the car. A car stopped with its windscreen under
  the sensor therefore reads like the empty bay.
- While a car moves under the sensor, the surface that returns the first echo changes from
  sample to sample: the car moves 125 to 190 mm between them. So each sample is another of
  the floor, the bonnet, the roof, or a late echo off the car's side (farther than the
  floor).
- The sensor's footprint is about 1.4 m across at 2.6 m, for a cone of about 30 degrees (an
  estimate). A car that crosses it and stops under it at a parking speed of 0.5 to 0.75 m/s
  swings the readings for 4 to 6 s. A car driving through at 10 km/h (2.8 m/s) crosses it
  in about 2.1 s, and a person walking at 1.4 m/s in about 1.4 s.
"""

import random

PERIOD_MS = 250
FLOOR_MM = 2600
NOISE_MM = 6
JSN_NOISE_MM = 15

BONNET_MM = 1850  # a bonnet about 750 mm high
ROOF_MM = 1150  # a roof about 1450 mm high
SIDE_ECHO_MM = 3300  # an echo off the car's side that reaches the floor and comes back late
PERSON_MM = 950  # the head and shoulders of a person about 1650 mm tall

# The surfaces a moving car returns, with how often each comes first.
CAR_SURFACES = ((FLOOR_MM, 35), (BONNET_MM, 25), (ROOF_MM, 25), (SIDE_ECHO_MM, 15))


class Recorder:
    """Build a distance trace sample by sample, with the ranger's noise."""

    def __init__(self, period_ms=PERIOD_MS, noise_mm=NOISE_MM, seed=0, start_ms=0):
        self.period_ms = period_ms
        self.noise_mm = noise_mm
        self.rng = random.Random(seed)
        self.now = start_ms
        self.times = []
        self.values = []

    def _emit(self, distance):
        self.times.append(self.now)
        self.values.append(distance + self.rng.randint(-self.noise_mm, self.noise_mm))
        self.now += self.period_ms

    def steady(self, duration_ms, distance=FLOOR_MM):
        """Hold one distance: an empty bay, or a parked car that reads `distance`."""
        end = self.now + duration_ms
        while self.now < end:
            self._emit(distance)
        return self

    def swing(self, duration_ms, surfaces=CAR_SURFACES):
        """A vehicle moving under the sensor: each sample is another of its surfaces, by weight."""
        end = self.now + duration_ms
        previous = None
        while self.now < end:
            others = [(level, weight) for level, weight in surfaces if level != previous]
            previous = self.rng.choices([level for level, _ in others], [weight for _, weight in others])[0]
            self._emit(previous)
        return self

    def passer(self, duration_ms, distance=PERSON_MM):
        """A person under the sensor: one near distance while they cross the footprint."""
        return self.steady(duration_ms, distance)

    def drift(self, duration_ms, start, end):
        """The empty bay's distance moving slowly, as the air's temperature changes."""
        steps = max(1, duration_ms // self.period_ms)
        for step in range(steps):
            self._emit(start + (end - start) * step // steps)
        return self

    def trace(self):
        return self.times, self.values


def hidden_car(entry_ms=5000, parked_ms=60000, exit_ms=4000, parked_mm=FLOOR_MM, noise_mm=NOISE_MM, seed=0):
    """An empty bay, a car that swings in and parks reading like the empty bay, and its exit.

    Returns times, values and the (arrival_ms, departure_start_ms, departure_ms) truth.
    """
    recorder = Recorder(noise_mm=noise_mm, seed=seed)
    recorder.steady(10000)
    arrival = recorder.now
    recorder.swing(entry_ms)
    recorder.steady(parked_ms, parked_mm)
    leaving = recorder.now
    recorder.swing(exit_ms)
    departure = recorder.now
    recorder.steady(20000)
    times, values = recorder.trace()
    return times, values, (arrival, leaving, departure)


def drive_through(pass_ms=2100, noise_mm=NOISE_MM, seed=0):
    """A car that drives through the bay without stopping."""
    return Recorder(noise_mm=noise_mm, seed=seed).steady(10000).swing(pass_ms).steady(20000).trace()


def walk_through(pass_ms=1400, noise_mm=NOISE_MM, seed=0):
    """A person who walks through the empty bay."""
    return Recorder(noise_mm=noise_mm, seed=seed).steady(10000).passer(pass_ms).steady(20000).trace()
