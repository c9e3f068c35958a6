# Streams recorded samples through the firmware's detector on the MicroPython interpreter.
#
# Runs on MicroPython only (it is never imported on the host). The host starts it once per
# replay with MICROPYPATH set to a folder of the detector's modules, compiled with mpy-cross,
# and writes one command per line:
#   S <settings JSON>     start a new detector (a new trace)
#   <time_ms> <value>     one sample
#   F <time_ms> <reason>  one sensor fault
#   E                     end of trace
# It prints one line per state change, "C <time_ms> <state> <reason> <value>", and after E one
# line "D <samples> <ticks_us in update> <bytes allocated in update> <detector bytes>". When
# the detector rejects the settings, it prints "X <message>" and skips the trace's samples.

import gc
import json
import sys
import time

from detector import Detector


def measure_detector_bytes(settings):
    # A Detector imports its kind's decision module when it is built. A first, discarded one
    # loads it, so the measured one counts the detector's own objects, not the module's code.
    Detector(settings)
    gc.collect()
    before = gc.mem_alloc()
    detector = Detector(settings)
    gc.collect()
    return detector, gc.mem_alloc() - before


def run():
    readline = sys.stdin.readline
    write = sys.stdout.write
    detector = None
    detector_bytes = 0
    samples = 0
    spent_us = 0
    allocated = 0
    while True:
        line = readline()
        if not line:
            break
        head = line[0]
        if head == "S":
            detector = None
            try:
                detector, detector_bytes = measure_detector_bytes(json.loads(line[2:]))
            except KeyError as error:
                write("X detector setting %s is missing\n" % error.args[0])
            except (ValueError, TypeError) as error:
                write("X %s\n" % error)
            samples = 0
            spent_us = 0
            allocated = 0
            gc.collect()
            continue
        if head == "E":
            write("D %d %d %d %d\n" % (samples, spent_us, allocated, detector_bytes))
            continue
        if detector is None:
            continue  # the settings were rejected
        if head == "F":
            parts = line[2:].split()
            now = int(parts[0])
            changed = detector.fault(int(parts[1]), now)
        else:
            parts = line.split()
            now = int(parts[0])
            value = int(parts[1])
            # Automatic collection would free memory between the two readings and hide
            # allocation, so it is off around the call and run here instead.
            if gc.mem_free() < 16384:
                gc.collect()
            gc.disable()
            before_bytes = gc.mem_alloc()
            started = time.ticks_us()
            changed = detector.update(value, now)
            spent = time.ticks_diff(time.ticks_us(), started)
            after_bytes = gc.mem_alloc()
            gc.enable()
            samples += 1
            spent_us += spent
            allocated += after_bytes - before_bytes
        if changed:
            write("C %d %d %d %d\n" % (now, detector.state, detector.reason, detector.value))


run()
