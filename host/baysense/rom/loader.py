"""The bootloader's command handlers: the ROM loader, and esptool's flasher stub once uploaded.

A Bootloader keeps the chip's state across connections (flash, registers, whether the stub
runs, the UART baud rate). `handle()` takes one request packet and sends the responses through
the session, which also gives READ_FLASH the host's acknowledgements.
"""

import logging
import struct
import zlib

from . import protocol as p
from .flashfile import FlashRangeError
from .registers import Registers

log = logging.getLogger(__name__)

ROM_BAUD = 115200  # the ROM loader's UART rate after reset (it auto-bauds on SYNC)
ROM_SYNC_VALUE = 0x20120707  # non-zero SYNC value: esptool takes 0 to mean "stub running"
STUB_GREETING = b"OHAI"
ROM_READ_BLOCK_BYTES = 64  # READ_FLASH_SLOW returns at most this much, padded to this size
READ_ACK_TIMEOUT_S = 10.0  # how long the stub waits for the host to acknowledge READ_FLASH data
SECURITY_INFO = struct.Struct("<IBBBBBBBBII")  # flags, crypt count, 7 key purposes, chip id, api


# Bootloader.state values
LOADER = "in the serial loader"
RUNNING_APP = "running its application"
IN_RESET = "held in reset"
NO_VALID_IMAGE = "looping on an invalid image"


class _FlashWrite:
    """An open FLASH_BEGIN or FLASH_DEFL_BEGIN: where the next bytes go and how many are due."""

    def __init__(self, offset, size, block_size, compressed):
        self.offset = offset
        self.size = size
        self.block_size = block_size
        self.position = offset
        self.inflater = zlib.decompressobj() if compressed else None


class Bootloader:
    """One chip in download mode; `stub` is True once esptool's flasher stub has been started."""

    def __init__(self, chip, flash, mac, baud=None, on_app_start=None):
        self.chip = chip
        self.flash = flash
        self.mac = mac
        self.pacing_baud = baud
        self.on_app_start = on_app_start
        self.registers = Registers(chip, flash, mac, baud or ROM_BAUD)
        self.reset()

    def reset(self):
        """Reset into the ROM loader, as EN with IO0 held low does."""
        self.stub = False
        self.state = LOADER
        self.registers.line_baud = self.pacing_baud or ROM_BAUD
        self.baud = self.pacing_baud
        self._write = None
        self._ram = None
        self._command = None

    # --- dispatch ---

    def handle(self, packet, session):
        if self.state != LOADER:
            log.debug("ignored a %d-byte frame: the chip is %s", len(packet), self.state)
            return
        if len(packet) < p.HEADER.size:
            log.warning("dropped a %d-byte frame, shorter than a request header", len(packet))
            return

        direction, command, length, check = p.HEADER.unpack_from(packet)
        data = packet[p.HEADER.size :]
        if direction != p.DIRECTION_REQUEST:
            return
        handler = self._handlers().get(command)
        self._command = command

        try:
            if length != len(data):
                raise p.CommandError(
                    p.ROM_INVALID_MESSAGE,
                    p.STUB_BAD_DATA_LENGTH,
                    "length field %d, but %d data bytes" % (length, len(data)),
                )
            if handler is None:
                raise p.CommandError(p.ROM_INVALID_MESSAGE, p.STUB_NOT_IMPLEMENTED, "unknown command")
            result = handler(data, check, session)
        except p.CommandError as error:
            code = error.stub_code if self.stub else error.rom_code
            log.info("command 0x%02x rejected with 0x%02x: %s", command, code, error)
            session.send(p.response(command, stub=self.stub, error=code))
            return

        if result is None:
            return  # the handler sent its own responses, or none is due
        value, payload = result
        session.send(p.response(command, value, payload, stub=self.stub))

    def _handlers(self):
        common = {
            p.SYNC: self._sync,
            p.READ_REG: self._read_reg,
            p.WRITE_REG: self._write_reg,
            p.SPI_SET_PARAMS: self._spi_set_params,
            p.SPI_ATTACH: self._spi_attach,
            p.CHANGE_BAUDRATE: self._change_baudrate,
            p.FLASH_BEGIN: self._flash_begin,
            p.FLASH_DATA: self._flash_data,
            p.FLASH_END: self._flash_end,
            p.FLASH_DEFL_BEGIN: self._flash_begin,
            p.FLASH_DEFL_DATA: self._flash_data,
            p.FLASH_DEFL_END: self._flash_end,
            p.SPI_FLASH_MD5: self._flash_md5,
            p.MEM_BEGIN: self._mem_begin,
            p.MEM_DATA: self._mem_data,
            p.MEM_END: self._mem_end,
        }
        if self.chip.has_security_info:
            common[p.GET_SECURITY_INFO] = self._security_info
        if self.stub:
            common.update(
                {
                    p.ERASE_FLASH: self._erase_flash,
                    p.ERASE_REGION: self._erase_region,
                    p.READ_FLASH: self._read_flash,
                    p.RUN_USER_CODE: self._run_user_code,
                }
            )
        elif self.chip.name == "esp32":
            # Only the ESP32 ROM has this slow read; later ROMs leave reading to the stub.
            common[p.READ_FLASH_SLOW] = self._read_flash_slow
        return common

    # --- registers, link and identity ---

    def _sync(self, data, check, session):
        if data != p.SYNC_PAYLOAD:
            raise p.CommandError(p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LENGTH, "invalid SYNC payload")
        value = 0 if self.stub else ROM_SYNC_VALUE
        for _ in range(p.SYNC_RESPONSES):
            session.send(p.response(p.SYNC, value, stub=self.stub))

    def _read_reg(self, data, check, session):
        (address,) = _unpack("<I", data)
        return self.registers.read(address), b""

    def _write_reg(self, data, check, session):
        if not data or len(data) % 16:
            raise p.CommandError(p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LENGTH, "WRITE_REG needs 16-byte entries")
        for address, value, mask, _delay_us in struct.iter_unpack("<IIII", data):
            self.registers.write(address, value, mask)
        return 0, b""

    def _spi_set_params(self, data, check, session):
        _id, total_size, _block, _sector, _page, _status_mask = _unpack("<IIIIII", data)
        if total_size > self.flash.size:
            log.info("host set flash size %d, larger than the %d-byte flash", total_size, self.flash.size)
        return 0, b""

    def _spi_attach(self, data, check, session):
        if len(data) not in (4, 8):
            raise p.CommandError(p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LENGTH, "SPI_ATTACH takes 4 or 8 bytes")
        return 0, b""

    def _change_baudrate(self, data, check, session):
        new_baud, _old_baud = _unpack("<II", data)
        if new_baud <= 0:
            raise p.CommandError(p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LENGTH, "baud rate 0")
        # The chip sends its response at the old rate, then switches.
        session.send(p.response(p.CHANGE_BAUDRATE, stub=self.stub))
        self.registers.line_baud = new_baud
        if self.pacing_baud is not None:
            self.baud = new_baud
        session.set_baud(self.baud)
        log.info("UART baud rate changed to %d", new_baud)

    def _security_info(self, data, check, session):
        info = SECURITY_INFO.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, self.chip.image_chip_id, 0)
        return 0, info

    # --- flash writes ---

    def _flash_begin(self, data, check, session):
        # The ESP32 ROM takes four words; later ROMs and the stub add an "encrypted" flag.
        expected = 20 if self.stub or self.chip.begin_has_encrypt_word else 16
        if len(data) != expected:
            raise p.CommandError(
                p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LENGTH, "FLASH_BEGIN takes %d bytes, got %d" % (expected, len(data))
            )
        size, _blocks, block_size, offset = struct.unpack_from("<IIII", data)
        compressed = self._command == p.FLASH_DEFL_BEGIN

        if block_size == 0:
            raise p.CommandError(p.ROM_INVALID_MESSAGE, p.STUB_BAD_BLOCKSIZE, "block size 0")
        try:
            self.flash.check_range(offset, size)
            # The ROM erases the whole range up front. The stub erases as it writes, which
            # leaves the same bytes once the write completes.
            self.flash.erase(offset, size)
        except FlashRangeError as error:
            raise p.CommandError(p.ROM_FAILED, p.STUB_FAILED_SPI_OP, str(error)) from None

        self._write = _FlashWrite(offset, size, block_size, compressed)
        log.info("flash %s begin at 0x%x, %d bytes", "compressed" if compressed else "raw", offset, size)
        return 0, b""

    def _flash_data(self, data, check, session):
        write = self._write
        compressed = self._command == p.FLASH_DEFL_DATA
        if write is None or (write.inflater is not None) != compressed:
            raise p.CommandError(p.ROM_FAILED, p.STUB_NOT_IN_FLASH_MODE, "no matching FLASH_BEGIN")
        block = _data_block(data, check)
        if not compressed and not self.stub and len(block) != write.block_size:
            raise p.CommandError(p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LENGTH, "block is not the block size")

        if compressed:
            try:
                block = write.inflater.decompress(block)
            except zlib.error as error:
                raise p.CommandError(p.ROM_DEFLATE_ERROR, p.STUB_INFLATE_ERROR, str(error)) from None

        end = write.offset + max(write.size, -(-write.size // write.block_size) * write.block_size)
        if write.position + len(block) > end:
            raise p.CommandError(p.ROM_FAILED, p.STUB_TOO_MUCH_DATA, "data past the FLASH_BEGIN size")
        try:
            self.flash.program(write.position, block)
        except FlashRangeError as error:
            raise p.CommandError(p.ROM_FLASH_WRITE_ERROR, p.STUB_FAILED_SPI_OP, str(error)) from None
        write.position += len(block)
        return 0, b""

    def _flash_end(self, data, check, session):
        (stay_in_loader,) = _unpack("<I", data)
        if self._write is None and self.stub:
            raise p.CommandError(p.ROM_FAILED, p.STUB_NOT_IN_FLASH_MODE, "no FLASH_BEGIN to end")
        self._write = None
        session.send(p.response(self._command, stub=self.stub))
        if not stay_in_loader:
            self.start_app("FLASH_END asked to run the application")

    def _flash_md5(self, data, check, session):
        address, size, _, _ = _unpack("<IIII", data)
        try:
            digest = self.flash.md5(address, size)
        except FlashRangeError as error:
            raise p.CommandError(p.ROM_FLASH_READ_ERROR, p.STUB_FAILED_SPI_OP, str(error)) from None
        # The ROM sends the digest as 32 ASCII hex digits, the stub as 16 raw bytes.
        return 0, (digest if self.stub else digest.hex().encode())

    # --- RAM downloads (how esptool starts its stub) ---

    def _mem_begin(self, data, check, session):
        size, blocks, block_size, address = _unpack("<IIII", data)
        self._ram = {"address": address, "size": size, "received": 0}
        return 0, b""

    def _mem_data(self, data, check, session):
        if self._ram is None:
            raise p.CommandError(p.ROM_FAILED, p.STUB_NOT_IN_FLASH_MODE, "no MEM_BEGIN")
        block = _data_block(data, check)
        self._ram["received"] += len(block)
        if self._ram["received"] > self._ram["size"]:
            raise p.CommandError(p.ROM_INVALID_MESSAGE, p.STUB_TOO_MUCH_DATA, "more RAM data than MEM_BEGIN announced")
        return 0, b""

    def _mem_end(self, data, check, session):
        no_entry, entry = _unpack("<II", data)
        session.send(p.response(p.MEM_END, stub=self.stub))
        if no_entry:
            return
        # NOTE: the uploaded code is not executed. Any program started this way is taken to be
        # esptool's flasher stub, because that is what esptool uploads. So `esptool load-ram`
        # of another program behaves as if the stub had started.
        log.info("RAM program started at 0x%08x: serving as esptool's flasher stub", entry)
        self.stub = True
        self._ram = None
        session.send(STUB_GREETING)

    # --- ROM-only and stub-only reads and erases ---

    def _read_flash_slow(self, data, check, session):
        address, length = _unpack("<II", data)
        if length > ROM_READ_BLOCK_BYTES:
            raise p.CommandError(p.ROM_READ_LENGTH_ERROR, p.STUB_BAD_DATA_LENGTH, "more than 64 bytes")
        try:
            block = self.flash.read(address, length)
        except FlashRangeError as error:
            raise p.CommandError(p.ROM_FLASH_READ_ERROR, p.STUB_FAILED_SPI_OP, str(error)) from None
        return 0, block.ljust(ROM_READ_BLOCK_BYTES, b"\x00")

    def _erase_flash(self, data, check, session):
        self.flash.erase_all()
        return 0, b""

    def _erase_region(self, data, check, session):
        offset, size = _unpack("<II", data)
        if offset % 0x1000 or size % 0x1000:
            raise p.CommandError(p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LENGTH, "region is not sector-aligned")
        try:
            self.flash.erase(offset, size)
        except FlashRangeError as error:
            raise p.CommandError(p.ROM_FAILED, p.STUB_FAILED_SPI_OP, str(error)) from None
        return 0, b""

    def _read_flash(self, data, check, session):
        offset, length, packet_size, max_unacked = _unpack("<IIII", data)
        if packet_size == 0 or max_unacked == 0:
            raise p.CommandError(p.ROM_INVALID_MESSAGE, p.STUB_BAD_BLOCKSIZE, "packet size or window 0")
        try:
            self.flash.check_range(offset, length)
        except FlashRangeError as error:
            raise p.CommandError(p.ROM_FAILED, p.STUB_FAILED_SPI_OP, str(error)) from None
        session.send(p.response(p.READ_FLASH, stub=True))

        # The stub streams raw packets and keeps at most `max_unacked` of them unacknowledged;
        # the host acknowledges with the running total of bytes it has received.
        sent = acked = 0
        while acked < length:
            while sent < length and sent - acked < max_unacked * packet_size:
                step = min(packet_size, length - sent)
                session.send(self.flash.read(offset + sent, step))
                sent += step
            ack = session.read_frame(READ_ACK_TIMEOUT_S)
            if ack is None or len(ack) != 4:
                log.warning("READ_FLASH aborted: no acknowledgement after %d of %d bytes", acked, length)
                return
            acked = struct.unpack("<I", ack)[0]
        session.send(self.flash.md5(offset, length))

    def _run_user_code(self, data, check, session):
        self.start_app("RUN_USER_CODE")

    def start_app(self, reason):
        """Leave the loader for the application in flash; `on_app_start(reason)` runs it."""
        log.info("leaving the bootloader: %s", reason)
        self.state = RUNNING_APP
        self.stub = False
        if self.on_app_start is not None:
            self.on_app_start(reason)

    def hold_in_reset(self):
        self.state = IN_RESET
        self.stub = False

    def halt_on_invalid_image(self):
        # The ROM prints its complaint and resets again; it reads no commands meanwhile.
        self.state = NO_VALID_IMAGE


def _unpack(layout, data):
    expected = struct.calcsize(layout)
    if len(data) != expected:
        raise p.CommandError(
            p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LENGTH, "expected %d data bytes, got %d" % (expected, len(data))
        )
    return struct.unpack(layout, data)


def _data_block(data, check):
    """Return the payload of a *_DATA request after checking its length field and checksum."""
    if len(data) < 16:
        raise p.CommandError(p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LENGTH, "data header missing")
    size, _seq, _, _ = struct.unpack_from("<IIII", data)
    block = data[16:]
    if size != len(block):
        raise p.CommandError(p.ROM_INVALID_MESSAGE, p.STUB_BAD_DATA_LENGTH, "size field %d, block %d" % (size, len(block)))
    if p.checksum(block) != check:
        raise p.CommandError(p.ROM_BAD_CHECKSUM, p.STUB_BAD_DATA_CHECKSUM, "checksum mismatch")
    return block
