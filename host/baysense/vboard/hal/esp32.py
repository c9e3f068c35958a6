# The board's `esp32` module on the virtual board: the few functions the firmware reads.


def mcu_temperature():
    return 45


def raw_temperature():
    return 113
