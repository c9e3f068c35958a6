# QMC5883L 3-axis magnetometer over I2C, with its DRDY pin as the data-ready interrupt.
#
# The driver takes the I2C bus and the DRDY pin from the board layer, so it never imports
# `machine`. The interrupt handler only timestamps the edge; read() then fetches the sample in
# one 7-byte transaction into a preallocated buffer. Neither allocates, so both can run once
# per sample on a node without feeding the garbage collector.
#
# Register map (QMC5883L datasheet, QST Corporation, rev. 1.0):
#   0x00..0x05 X, Y, Z as little-endian int16; 0x06 status (bit 0 DRDY, bit 1 OVL overflow,
#   bit 2 DOR data skipped); 0x09 control 1 (OSR | RNG | ODR | MODE); 0x0A control 2 (bit 7 soft
#   reset, bit 0 INT_ENB, 0 = DRDY pin enabled); 0x0B SET/RESET period (0x01 recommended);
#   0x0D chip id, reads 0xFF.

try:
    import micropython
    from micropython import const
except ImportError:  # CPython
    micropython = None

    def const(value):
        return value


# Room for the traceback of an exception raised inside an interrupt handler, where the heap
# may be locked. The unix port has no such call, hence the check.
if micropython is not None and hasattr(micropython, "alloc_emergency_exception_buf"):
    micropython.alloc_emergency_exception_buf(100)


try:
    from time import ticks_ms, ticks_diff
except ImportError:  # CPython
    from detector import ticks_diff
    from time import monotonic_ns

    def ticks_ms():
        return (monotonic_ns() // 1000000) & ((1 << 30) - 1)


from detector import FAULT_BUS, FAULT_NO_DATA, FAULT_NONE, FAULT_OVERFLOW

DEFAULT_ADDRESS = const(0x0D)
CHIP_ID = const(0xFF)

_REG_DATA = const(0x00)
_REG_CONTROL_1 = const(0x09)
_REG_CONTROL_2 = const(0x0A)
_REG_SET_RESET = const(0x0B)
_REG_CHIP_ID = const(0x0D)

_STATUS_READY = const(0x01)
_STATUS_OVERFLOW = const(0x02)
_STATUS_SKIPPED = const(0x04)

_MODE_CONTINUOUS = const(0x01)
_SOFT_RESET = const(0x80)

# Control 1 field values by setting, from the datasheet's register table.
RATES_HZ = {10: 0x00, 50: 0x04, 100: 0x08, 200: 0x0C}
RANGES_GAUSS = {2: 0x00, 8: 0x10}
OVERSAMPLING = {512: 0x00, 256: 0x40, 128: 0x80, 64: 0xC0}

# One value per sample for the detector: one axis, or |x| + |y| + |z|. The L1 sum replaces the
# magnitude because x^2 + y^2 + z^2 can pass 2^30 and become a heap-allocated big integer
# on the ESP32 port.
AXES = ("x", "y", "z", "sum")


class QMC5883L:
    """One QMC5883L: configure, take data-ready interrupts, read samples without allocating."""

    def __init__(self, i2c, address=DEFAULT_ADDRESS, drdy=None, axis="z", rate_hz=10, range_gauss=8, oversampling=512):
        if axis not in AXES:
            raise ValueError("axis %r is not one of %s" % (axis, ", ".join(AXES)))
        if rate_hz not in RATES_HZ:
            raise ValueError("rate_hz %r is not one of %s" % (rate_hz, sorted(RATES_HZ)))
        if range_gauss not in RANGES_GAUSS:
            raise ValueError("range_gauss %r is not 2 or 8" % (range_gauss,))
        if oversampling not in OVERSAMPLING:
            raise ValueError("oversampling %r is not one of %s" % (oversampling, sorted(OVERSAMPLING)))
        self.i2c = i2c
        self.address = address
        self.drdy = drdy
        self.axis = AXES.index(axis)
        self._control = OVERSAMPLING[oversampling] | RANGES_GAUSS[range_gauss] | RATES_HZ[rate_hz] | _MODE_CONTINUOUS

        self._buffer = bytearray(7)  # X, Y, Z (little-endian int16) and the status byte
        self._view = memoryview(self._buffer)
        self._register_byte = bytearray(1)
        self.x = 0
        self.y = 0
        self.z = 0
        self.value = 0
        self.reason = FAULT_NONE
        self.ready_ms = 0  # ticks_ms of the last data-ready edge
        self.ready_count = 0  # data-ready edges seen; the node compares it with samples read
        self.skipped = 0  # samples the chip overwrote before they were read (status DOR)
        self._pending = False
        # Bound once here: creating the bound method inside irq() at each start would allocate.
        self._handler = self._on_ready

    def start(self):
        """Reset and configure the chip; raise OSError if its chip id is not a QMC5883L's."""
        self._write(_REG_CONTROL_2, _SOFT_RESET)
        self.i2c.readfrom_mem_into(self.address, _REG_CHIP_ID, self._register_byte)
        if self._register_byte[0] != CHIP_ID:
            raise OSError("QMC5883L at 0x%02x: chip id 0x%02x, expected 0x%02x" % (self.address, self._register_byte[0], CHIP_ID))
        self._write(_REG_SET_RESET, 0x01)
        self._write(_REG_CONTROL_2, 0x00)  # INT_ENB = 0: drive the DRDY pin
        self._write(_REG_CONTROL_1, self._control)
        if self.drdy is not None:
            self.drdy.irq(handler=self._handler, trigger=self.drdy.IRQ_RISING)

    def stop(self):
        if self.drdy is not None:
            self.drdy.irq(handler=None)
        self._write(_REG_CONTROL_1, 0x00)  # standby

    def _write(self, register, value):
        self._register_byte[0] = value
        self.i2c.writeto_mem(self.address, register, self._register_byte)

    def _on_ready(self, pin):
        # Interrupt handler: timestamps only. On the ESP32 port pin interrupts are scheduled
        # and may run late, so the node reads the chip's own status rather than trusting timing.
        self.ready_ms = ticks_ms()
        self.ready_count += 1
        self._pending = True

    def pending(self):
        """Return True when a data-ready edge arrived since the last read()."""
        return self._pending

    def read(self):
        """Read one sample into x, y, z and value; return True if it is valid.

        On False, `reason` contains a detector FAULT_* code (bus error, overflow or no new data).
        """
        self._pending = False
        try:
            self.i2c.readfrom_mem_into(self.address, _REG_DATA, self._buffer)
        except OSError:
            self.reason = FAULT_BUS
            return False
        data = self._view
        status = data[6]
        if status & _STATUS_SKIPPED:
            self.skipped += 1
        if status & _STATUS_OVERFLOW:
            self.reason = FAULT_OVERFLOW
            return False
        if not status & _STATUS_READY:
            self.reason = FAULT_NO_DATA
            return False
        self.x = _int16(data[0], data[1])
        self.y = _int16(data[2], data[3])
        self.z = _int16(data[4], data[5])
        self.value = self._reduce()
        self.reason = FAULT_NONE
        return True

    def silent_for(self, now_ms):
        """Return the ms since the last data-ready edge (for a no-data fault check)."""
        return ticks_diff(now_ms, self.ready_ms)

    def _reduce(self):
        axis = self.axis
        if axis == 0:
            return self.x
        if axis == 1:
            return self.y
        if axis == 2:
            return self.z
        return abs(self.x) + abs(self.y) + abs(self.z)


def _int16(low, high):
    value = low | (high << 8)
    if value >= 0x8000:
        value -= 0x10000
    return value


class Magnetometer:
    """The board layer's magnetometer: a QMC5883L configured from the board's sensor section.

    Sensor settings used: i2c_address, sample_period_ms (picks the chip's output rate),
    axis ("x", "y", "z" or "sum", default "sum").
    """

    def __init__(self, i2c, drdy, settings):
        period_ms = settings.get("sample_period_ms", 100)
        rate_hz = 10
        for rate in sorted(RATES_HZ):
            if rate * period_ms <= 1000:
                rate_hz = rate  # the fastest rate that the sample period still keeps up with
        self.chip = QMC5883L(
            i2c,
            address=settings.get("i2c_address", DEFAULT_ADDRESS),
            drdy=drdy,
            axis=settings.get("axis", "sum"),
            rate_hz=rate_hz,
        )
        self.chip.start()
        self.value = 0
        self.fault = FAULT_NONE

    def sample(self):
        """Read one sample into value and fault; return the fault code (0 = valid).

        Allocation-free, unlike read(), which builds a tuple.
        """
        chip = self.chip
        if chip.read():
            self.value = chip.value
            self.fault = FAULT_NONE
        else:
            self.fault = chip.reason
        return self.fault

    def read(self):
        """Return (value, fault code), the board layer's sensor interface."""
        self.sample()
        return self.value, self.fault
