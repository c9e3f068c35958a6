"""Packet layout, command codes and status codes of the ESP serial bootloader protocol.

Request: direction 0x00, command, data length (u16), checksum (u32), data.
Response: direction 0x01, command, data length (u16), value (u32), data that ends in status
bytes. ROM loaders of the ESP32 family send four status bytes (failed flag, error code, two
reserved); esptool's flasher stub sends two (error code, 0). Codes are the ones esptool 5.6's
FatalError.WithResult decodes.
"""

import struct

HEADER = struct.Struct("<BBHI")
DIRECTION_REQUEST = 0x00
DIRECTION_RESPONSE = 0x01

FLASH_BEGIN = 0x02
FLASH_DATA = 0x03
FLASH_END = 0x04
MEM_BEGIN = 0x05
MEM_END = 0x06
MEM_DATA = 0x07
SYNC = 0x08
WRITE_REG = 0x09
READ_REG = 0x0A
SPI_SET_PARAMS = 0x0B
SPI_ATTACH = 0x0D
READ_FLASH_SLOW = 0x0E
CHANGE_BAUDRATE = 0x0F
FLASH_DEFL_BEGIN = 0x10
FLASH_DEFL_DATA = 0x11
FLASH_DEFL_END = 0x12
SPI_FLASH_MD5 = 0x13
GET_SECURITY_INFO = 0x14
ERASE_FLASH = 0xD0
ERASE_REGION = 0xD1
READ_FLASH = 0xD2
RUN_USER_CODE = 0xD3

# The SYNC request's fixed payload; the ROM uses the 0x55 bytes to measure the baud rate.
SYNC_PAYLOAD = b"\x07\x07\x12\x20" + b"\x55" * 32
# The ROM sends eight responses to one SYNC, and esptool reads all eight.
SYNC_RESPONSES = 8

# Initial value of the XOR checksum over the data of *_DATA commands.
CHECKSUM_SEED = 0xEF

# ROM error codes (second status byte, after a failed flag of 1).
ROM_INVALID_MESSAGE = 0x05  # unknown command, or a length or parameter that is invalid
ROM_FAILED = 0x06  # the message was fine but acting on it failed
ROM_BAD_CHECKSUM = 0x07
ROM_FLASH_WRITE_ERROR = 0x08
ROM_FLASH_READ_ERROR = 0x09
ROM_READ_LENGTH_ERROR = 0x0A
ROM_DEFLATE_ERROR = 0x0B

# Flasher stub error codes (first status byte).
STUB_BAD_DATA_LENGTH = 0xC0
STUB_BAD_DATA_CHECKSUM = 0xC1
STUB_BAD_BLOCKSIZE = 0xC2
STUB_INVALID_COMMAND = 0xC3
STUB_FAILED_SPI_OP = 0xC4
STUB_NOT_IN_FLASH_MODE = 0xC6
STUB_INFLATE_ERROR = 0xC7
STUB_NOT_ENOUGH_DATA = 0xC8
STUB_TOO_MUCH_DATA = 0xC9
STUB_NOT_IMPLEMENTED = 0xFF


class CommandError(Exception):
    """A request the loader rejects; `rom_code` and `stub_code` are the status it sends."""

    def __init__(self, rom_code, stub_code, reason):
        super().__init__(reason)
        self.rom_code = rom_code
        self.stub_code = stub_code


def checksum(data):
    value = CHECKSUM_SEED
    for byte in data:
        value ^= byte
    return value


def status_bytes(stub, error=0):
    if stub:
        return bytes((error, 0))
    return bytes((1 if error else 0, error, 0, 0))


def response(command, value=0, data=b"", stub=False, error=0):
    """Return one response packet (not yet SLIP-encoded)."""
    body = bytes(data) + status_bytes(stub, error)
    return HEADER.pack(DIRECTION_RESPONSE, command, len(body), value) + body
