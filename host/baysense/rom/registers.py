"""The chip's memory-mapped registers as far as esptool reads and writes them.

esptool reads the flash's JEDEC id and status through the SPI0 controller's "user command"
registers: it writes the opcode into USR2, sets the USR bit in CMD, polls CMD until the bit
clears and reads the result from W0. This module runs such a command at once.
"""

import logging

from .chips import APB_CLOCK_HZ, CHIP_DETECT_MAGIC_REG, efuse_words

log = logging.getLogger(__name__)

SPI_CMD_USR = 1 << 18
SPI_OPCODE_MASK = 0xFFFF

SPIFLASH_RDID = 0x9F
SPIFLASH_RDSR = (0x05, 0x35, 0x15)  # status register bytes 1..3
SPIFLASH_RDSFDP = 0x5A


class Registers:
    """A register file: fixed values from the chip record, writable words, the SPI controller."""

    def __init__(self, chip, flash, mac, line_baud):
        self.chip = chip
        self.flash = flash
        self.line_baud = line_baud
        self._values = dict(chip.fixed_registers)
        self._values[CHIP_DETECT_MAGIC_REG] = chip.magic_value
        self._values.update(efuse_words(chip, mac))

    def read(self, address):
        if address == self.chip.uart_clkdiv_reg:
            # Download mode derives the UART clock from the crystal; esptool multiplies this
            # divider by its own baud rate to name the crystal frequency.
            return APB_CLOCK_HZ // self.line_baud
        return self._values.get(address, 0)

    def write(self, address, value, mask):
        old = self._values.get(address, 0)
        self._values[address] = (old & ~mask | value & mask) & 0xFFFFFFFF
        if address == self.chip.spi_base and self._values[address] & SPI_CMD_USR:
            self._run_spi_command()

    def _run_spi_command(self):
        base = self.chip.spi_base
        opcode = self._values.get(base + self.chip.spi_usr2, 0) & SPI_OPCODE_MASK
        if opcode == SPIFLASH_RDID:
            result = self.flash.jedec_id
        elif opcode in SPIFLASH_RDSR:
            result = 0  # no write in progress, no block protection, quad mode off
        elif opcode == SPIFLASH_RDSFDP:
            result = 0  # NOTE: no SFDP table is modelled; esptool reads it only on request
        else:
            # Write enable, status writes and the like change nothing the virtual flash keeps.
            result = self._values.get(base + self.chip.spi_w0, 0)
        log.debug("SPI flash command 0x%02x -> 0x%08x", opcode, result)
        self._values[base + self.chip.spi_w0] = result
        self._values[base] &= ~SPI_CMD_USR
