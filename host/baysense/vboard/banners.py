"""Reset messages of an ESP32 running MicroPython, for the virtual board to print the same.

Modelled on the serial output of real boards (ESP32 ROM 2016-06-08, MicroPython 1.19 to 1.23).
"""

import re

MICROPYTHON_BANNER = b"MicroPython v1.29.0-preview on 2026-07-05; Generic ESP32 module with ESP32"

# The unix port's own banner line, which the virtual board replaces with MICROPYTHON_BANNER.
UNIX_BANNER = re.compile(rb"MicroPython [^\r\n;]+ on [^\r\n;]+; linux \[[^\]\r\n]*\] version")

SOFT_REBOOT = b"MPY: soft reboot\r\n"

# ROM reset reasons (rst:0x..) as the ESP32 ROM prints them.
ROM_RESET_REASONS = {
    "poweron": b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "hard": b"rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "wdt": b"rst:0x7 (TG0WDT_SYS_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
    "deepsleep": b"rst:0x5 (DEEPSLEEP_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
}


def rom_boot(reason):
    """Return the ROM and second-stage loader lines printed before MicroPython starts."""
    return (
        b"ets Jun  8 2016 00:22:57\r\n\r\n"
        + ROM_RESET_REASONS[reason]
        + b"\r\nconfigsip: 0, SPIWP:0xee\r\n"
        b"clk_drv:0x00,q_drv:0x00,d_drv:0x00,cs0_drv:0x00,hd_drv:0x00,wp_drv:0x00\r\n"
        b"mode:DIO, clock div:2\r\n"
        b"load:0x3fff0030,len:4540\r\n"
        b"ho 0 tail 12 room 4\r\n"
        b"load:0x40078000,len:12788\r\n"
        b"load:0x40080400,len:4176\r\n"
        b"entry 0x40080680\r\n"
    )


TASK_WDT = (
    b"E (%d) task_wdt: Task watchdog got triggered. The following tasks did not reset the watchdog in time:\r\n"
    b"E (%d) task_wdt:  - mp_task (CPU 0)\r\n"
)
