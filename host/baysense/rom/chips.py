"""Chip identities as esptool's detection and reports read them, one record per chip model.

Register addresses and field layouts follow esptool 5.6's targets/esp32*.py (the classes that
read them) and Espressif's technical reference manuals. Only registers that esptool reads are
modelled. Every other address reads as 0, which on these chips means "eFuse not burnt".
"""

import hashlib
from dataclasses import dataclass, field

# Address of a ROM word whose value differs per chip model; esptool reads it to tell an ESP32
# (which has no GET_SECURITY_INFO) from other chips.
CHIP_DETECT_MAGIC_REG = 0x40001000

# The APB clock the UART divider is derived from in download mode (40 MHz crystal).
APB_CLOCK_HZ = 40_000_000

# Espressif's IEEE OUI, so a virtual MAC looks like a real board's in fleet tools.
ESPRESSIF_OUI = bytes((0x24, 0x0A, 0xC4))


@dataclass(frozen=True)
class Chip:
    """One chip model: identity, register map and what its ROM prints on boot."""

    name: str  # as `--chip` spells it
    display_name: str  # as esptool prints it
    image_chip_id: int  # the chip id field of the app image's extended header
    magic_value: int  # value at CHIP_DETECT_MAGIC_REG
    image_offset: int  # where the ROM's second stage (or MicroPython's image) starts
    has_security_info: bool  # ROM implements GET_SECURITY_INFO (ESP32-S2 and later)
    begin_has_encrypt_word: bool  # FLASH_BEGIN carries a fifth word (not on the ESP32 ROM)
    spi_base: int
    spi_usr: int
    spi_usr2: int
    spi_w0: int
    uart_clkdiv_reg: int
    mac_words: tuple  # (address of the word with MAC bytes 2..5, address of bytes 0..1)
    fixed_registers: dict = field(default_factory=dict)
    rom_banner: str = ""
    reset_names: dict = field(default_factory=dict)  # reason -> "0x1 (POWERON_RESET)"
    download_boot: str = ""
    flash_boot: str = ""


ESP32 = Chip(
    name="esp32",
    display_name="ESP32",
    image_chip_id=0,
    magic_value=0x00F01D83,
    image_offset=0x1000,
    has_security_info=False,
    begin_has_encrypt_word=False,
    spi_base=0x3FF42000,
    spi_usr=0x1C,
    spi_usr2=0x24,
    spi_w0=0x80,
    uart_clkdiv_reg=0x3FF40014,
    mac_words=(0x3FF5A004, 0x3FF5A008),  # eFuse BLK0 words 1 and 2
    fixed_registers={
        # BLK0 word 3: package ESP32-D0WD (bits 9..11 = 1) and chip revision bit 0 (bit 15).
        0x3FF5A00C: (1 << 9) | (1 << 15),
        # BLK0 word 4: CK8M frequency trim, which esptool uses with RTCCALICFG1 below to
        # recompute the crystal the ROM measured: 1024 * 15625 * 100 / 40 = 40 MHz.
        0x3FF5A010: 100,
        # BLK0 word 5: chip revision bit 1 (bit 20); with APB_CTL_DATE bit 31 this is v3.0.
        0x3FF5A014: 1 << 20,
        0x3FF6607C: 1 << 31,  # APB_CTL_DATE
        0x3FF5F06C: 1024 << 7,  # RTCCALICFG1: calibration value in bits 7..31
    },
    rom_banner="ets Jun  8 2016 00:22:57\n\n",
    reset_names={
        "poweron": "0x1 (POWERON_RESET)",
        "software": "0xc (SW_CPU_RESET)",
        "watchdog": "0x10 (RTCWDT_RTC_RESET)",
    },
    download_boot="0x3 (DOWNLOAD_BOOT(UART0/UART1/SDIO_REI_REO_V2))",
    flash_boot="0x13 (SPI_FAST_FLASH_BOOT)",
)

ESP32S3 = Chip(
    name="esp32s3",
    display_name="ESP32-S3",
    image_chip_id=9,
    magic_value=0x00000009,
    image_offset=0x0,
    has_security_info=True,
    begin_has_encrypt_word=True,
    spi_base=0x60002000,
    spi_usr=0x18,
    spi_usr2=0x20,
    spi_w0=0x58,
    uart_clkdiv_reg=0x60000014,
    mac_words=(0x60007044, 0x60007048),  # eFuse BLOCK1 words 0 and 1
    rom_banner="ESP-ROM:esp32s3-20210327\nBuild:Mar 27 2021\n",
    reset_names={
        "poweron": "0x1 (POWERON)",
        "software": "0xc (RTC_SW_CPU_RST)",
        "watchdog": "0x10 (RTCWDT_RTC_RST)",
    },
    download_boot="0x0 (DOWNLOAD(USB/UART0))",
    flash_boot="0x8 (SPI_FAST_FLASH_BOOT)",
)

ESP32C3 = Chip(
    name="esp32c3",
    display_name="ESP32-C3",
    image_chip_id=5,
    magic_value=0x1B31506F,
    image_offset=0x0,
    has_security_info=True,
    begin_has_encrypt_word=True,
    spi_base=0x60002000,
    spi_usr=0x18,
    spi_usr2=0x20,
    spi_w0=0x58,
    uart_clkdiv_reg=0x60000014,
    mac_words=(0x60008844, 0x60008848),  # eFuse BLOCK1 words 0 and 1
    fixed_registers={
        # BLOCK1 word 5: major revision 0, minor revision hi bit 0; word 3 bits 18..20: minor 4,
        # so esptool reports v0.4, a common production revision.
        0x60008850: 4 << 18,
    },
    rom_banner="ESP-ROM:esp32c3-api1-20210207\nBuild:Feb  7 2021\n",
    reset_names={
        "poweron": "0x1 (POWERON)",
        "software": "0xc (RTC_SW_CPU_RST)",
        "watchdog": "0x10 (RTCWDT_RTC_RST)",
    },
    download_boot="0x5 (DOWNLOAD(USB/UART0/1))",
    flash_boot="0xc (SPI_FAST_FLASH_BOOT)",
)

CHIPS = {chip.name: chip for chip in (ESP32, ESP32S3, ESP32C3)}


def chip_by_name(name):
    """Return the Chip for `name` ("esp32", "esp32s3", "esp32c3"; "ESP32-S3" also works)."""
    from ..errors import ConfigError

    key = name.lower().replace("-", "")
    try:
        return CHIPS[key]
    except KeyError:
        raise ConfigError(
            "unsupported chip (%s)" % name, "use one of: %s" % ", ".join(sorted(CHIPS))
        ) from None


def virtual_mac(seed):
    """Return a stable 6-byte MAC for a virtual board, derived from `seed` (its flash path)."""
    digest = hashlib.sha256(str(seed).encode()).digest()
    return ESPRESSIF_OUI + digest[:3]


def efuse_words(chip, mac):
    """Return the register values that hold `mac` in `chip`'s eFuse, as {address: value}."""
    low_address, high_address = chip.mac_words
    low = int.from_bytes(mac[2:6], "big")
    high = int.from_bytes(mac[0:2], "big")
    if chip is ESP32:
        # BLK0 word 2 carries the MAC's CRC8 in bits 16..23 above the two top MAC bytes.
        high |= mac_crc8(mac) << 16
    return {low_address: low, high_address: high}


def mac_crc8(mac):
    """Return the ESP32 eFuse MAC CRC: CRC-8, reflected polynomial 0x8C, initial value 0.

    NOTE: the CRC runs over the bytes in eFuse order (lowest address first). esptool never
    checks it, and that byte order is not confirmed against a real chip.
    """
    crc = 0
    for byte in reversed(mac):
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc
