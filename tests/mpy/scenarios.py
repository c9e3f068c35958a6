"""Synthetic bay recordings with known truth, shared by the CPython and MicroPython tests.

Each builder returns (times_ms, values) for one sensor kind. Noise is uniform within
+-noise, which stays inside the band a calibration learns from the same noise.
"""

import random


def _noise(rng, amplitude):
    return rng.randint(-amplitude, amplitude) if amplitude else 0


def distance_trace(period_ms, segments, noise_mm=0, seed=0):
    """Ultrasonic: segments are (duration_ms, distance_mm); returns times and readings."""
    rng = random.Random(seed)
    times, values = [], []
    now = 0
    for duration, distance in segments:
        end = now + duration
        while now < end:
            times.append(now)
            values.append(distance + _noise(rng, noise_mm))
            now += period_ms
    return times, values


def field_trace(
    period_ms=90,
    baseline=300,
    noise=3,
    vacant_before_ms=20000,
    entry_ms=8000,
    swing=120,
    shift=40,
    parked_ms=30000,
    exit_ms=8000,
    vacant_after_ms=20000,
    seed=0,
):
    """Magnetometer: empty bay, a manoeuvring entry, a parked car, a manoeuvring exit.

    The manoeuvres swing the field by up to `swing` counts around the levels they join, as a
    vehicle's steel passing over the sensor does. The parked car shifts the field by `shift`,
    which may be 0: a car whose steady field is the empty bay's.
    Returns times, values and the (arrival_ms, departure_ms) truth.
    """
    rng = random.Random(seed)
    times, values = [], []
    now = 0

    def emit(level):
        nonlocal now
        times.append(now)
        values.append(int(level) + _noise(rng, noise))
        now += period_ms

    while now < vacant_before_ms:
        emit(baseline)
    arrival = now
    steps = max(1, entry_ms // period_ms)
    for step in range(steps):
        phase = step / steps
        # A few swings of decreasing size that end on the parked level.
        emit(baseline + shift * phase + swing * (1 - phase) * _triangle(phase * 3))
    parked_end = now + parked_ms
    while now < parked_end:
        emit(baseline + shift)
    departure_start = now
    steps = max(1, exit_ms // period_ms)
    for step in range(steps):
        phase = step / steps
        emit(baseline + shift * (1 - phase) + swing * phase * _triangle(phase * 3))
    departure = now
    end = now + vacant_after_ms
    while now < end:
        emit(baseline)
    return times, values, (arrival, departure_start, departure)


def passing_trace(period_ms=90, baseline=300, noise=3, pass_ms=2000, dip=80, quiet_ms=20000, seed=0):
    """Magnetometer: one vehicle driving over the sensor without stopping."""
    rng = random.Random(seed)
    times, values = [], []
    now = 0
    while now < quiet_ms:
        times.append(now)
        values.append(baseline + _noise(rng, noise))
        now += period_ms
    start = now
    while now < start + pass_ms:
        phase = (now - start) / pass_ms
        times.append(now)
        values.append(int(baseline - dip * _triangle(phase)) + _noise(rng, noise))
        now += period_ms
    end = now + quiet_ms
    while now < end:
        times.append(now)
        values.append(baseline + _noise(rng, noise))
        now += period_ms
    return times, values


def _triangle(phase):
    # 0 -> 1 -> 0 over each unit of phase.
    fraction = phase % 1.0
    return 2 * fraction if fraction < 0.5 else 2 * (1 - fraction)
