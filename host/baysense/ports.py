"""Serial ports: finding ESP32 boards on USB and resolving every command's --port.

A --port value is a device path or pyserial URL (socket://, rfc2217://), or `auto`: the one
port whose USB bridge an ESP32 board uses. It can also be `id:SERIAL`, the port whose USB
serial number is SERIAL, which stays the same when the board moves to another hub socket.
"""

import importlib.util
import json
import logging
import os
import stat
from urllib.parse import urlsplit

import click
import serial
import serial.tools.list_ports

from .errors import ConfigError

log = logging.getLogger(__name__)

ENV_PORT = "BAYSENSE_PORT"
AUTO = "auto"
ID_PREFIX = "id:"
# URL protocols that pyserial opens over TCP, so they need HOST:PORT.
TCP_PROTOCOLS = ("socket", "rfc2217")
URL_EXAMPLE = "socket://127.0.0.1:4000 or rfc2217://127.0.0.1:4000"

# (USB vendor id, product id) -> the USB-serial bridge it is, for the bridges ESP32 boards carry.
# A product id of None matches every product of the vendor.
ESP32_BRIDGES = {
    (0x10C4, 0xEA60): "cp210x",
    (0x1A86, 0x7523): "ch340",
    (0x1A86, 0x55D4): "ch9102",
    (0x0403, 0x6001): "ftdi",
    (0x0403, 0x6010): "ftdi",
    (0x0403, 0x6014): "ftdi",
    (0x0403, 0x6015): "ftdi",
    # Espressif's own vendor id: the USB-Serial-JTAG of the S3, C3 and C6 (0x1001) and the
    # USB-OTG console of the S2 and S3 (other product ids).
    (0x303A, None): "espressif-native",
}


def bridge_of(vid, pid):
    """Return the name of the ESP32 USB bridge with this vendor and product id, or None."""
    if vid is None:
        return None
    return ESP32_BRIDGES.get((vid, pid)) or ESP32_BRIDGES.get((vid, None))


def list_ports():
    """Return every serial port as a dict, ESP32 bridges marked in "bridge", sorted by device."""
    ports = []
    for info in serial.tools.list_ports.comports():
        ports.append(
            {
                "device": info.device,
                "vid_pid": "%04x:%04x" % (info.vid, info.pid) if info.vid is not None else None,
                "serial_number": info.serial_number,
                "location": info.location,
                "description": info.description,
                "manufacturer": info.manufacturer,
                "bridge": bridge_of(info.vid, info.pid),
            }
        )
    return sorted(ports, key=lambda port: port["device"])


def _describe(ports):
    if not ports:
        return "none"
    return "; ".join(
        "%s (%s, serial %s)" % (port["device"], port["vid_pid"] or "no USB id", port["serial_number"] or "none")
        for port in ports
    )


def _resolve_auto():
    ports = list_ports()
    candidates = [port for port in ports if port["bridge"]]
    if len(candidates) == 1:
        log.info("--port auto: %s (%s)", candidates[0]["device"], candidates[0]["bridge"])
        return candidates[0]["device"]
    if not candidates:
        raise ConfigError(
            "--port auto found no port with an ESP32 USB bridge (serial ports: %s)" % _describe(ports),
            "plug the board in (a charge-only cable shows no port), or pass --port PATH",
        )
    raise ConfigError(
        "--port auto found %d ESP32 boards: %s" % (len(candidates), _describe(candidates)),
        "choose one with --port PATH or --port id:SERIAL",
    )


def _resolve_serial_number(serial_number):
    if not serial_number:
        raise ConfigError("empty USB serial number in --port id:", "use --port id:SERIAL (see `baysense ports`)")
    ports = list_ports()
    matches = [port for port in ports if port["serial_number"] == serial_number]
    if len(matches) == 1:
        return matches[0]["device"]
    if not matches:
        raise ConfigError(
            "no serial port with USB serial number %r (serial ports: %s)" % (serial_number, _describe(ports)),
            "check the number with `baysense ports`; is the board plugged in?",
        )
    # A dual-channel bridge (FTDI 0403:6010) shows one serial number on two ports.
    raise ConfigError(
        "%d serial ports have USB serial number %r: %s" % (len(matches), serial_number, _describe(matches)),
        "pass the device path with --port PATH",
    )


def _url_protocols():
    # The protocols of the installed pyserial, one module each in its URL handler packages.
    found = []
    for package in serial.protocol_handler_packages:
        spec = importlib.util.find_spec(package)
        for folder in spec.submodule_search_locations if spec else ():
            for name in sorted(os.listdir(folder)):
                if name.startswith("protocol_") and name.endswith(".py"):
                    found.append(name[len("protocol_") : -len(".py")])
    return found


def _check_url(spec):
    # pyserial reports these as "invalid URL, protocol 'sockt' not known" or a TypeError from
    # comparing a missing port number, which name no fix.
    scheme, _, _ = spec.partition("://")
    protocols = _url_protocols()
    if scheme not in protocols:
        raise ConfigError(
            "unknown port protocol %r in --port %s" % (scheme, spec),
            "use a device path such as /dev/ttyUSB0, or %s (pyserial protocols: %s)" % (URL_EXAMPLE, ", ".join(protocols)),
        )
    if scheme not in TCP_PROTOCOLS:
        return
    parts = urlsplit(spec)
    try:
        number = parts.port
    except ValueError:
        number = -1
    if not parts.hostname or number is None:
        raise ConfigError("no host or TCP port number in --port %s" % spec, "write it as %s" % URL_EXAMPLE)
    if not 1 <= number <= 65535:
        raise ConfigError("invalid TCP port number in --port %s" % spec, "use a port from 1 to 65535, as in %s" % URL_EXAMPLE)


def _check_path(spec):
    # Only an existing path is checked, because a board's device path appears when it is
    # plugged in. The file is not opened: opening a serial port can reset an ESP32 board.
    try:
        mode = os.stat(spec).st_mode
    except OSError:
        return
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a regular file"
        raise ConfigError(
            "--port %s is %s, not a serial port" % (spec, kind),
            "pass the board's device path, such as /dev/ttyUSB0 (see `baysense ports`), or %s" % URL_EXAMPLE,
        )


def resolve_port(spec):
    """Turn a --port value (or $BAYSENSE_PORT when it is empty) into something pyserial opens."""
    if not spec:
        spec = os.environ.get(ENV_PORT)
    if not spec:
        raise ConfigError("no port given", "pass --port PORT (or auto, or id:SERIAL) or set %s" % ENV_PORT)
    if spec == AUTO:
        return _resolve_auto()
    if spec.startswith(ID_PREFIX):
        return _resolve_serial_number(spec[len(ID_PREFIX) :])
    if "://" in spec:
        _check_url(spec)
    else:
        _check_path(spec)
    return spec


def open_error_hint(port, text):
    """Return the next step for a port that pyserial failed to open with `text`, or None.

    The messages device.py already explains (permission denied, not found, busy) are left to it.
    """
    lowered = text.lower()
    if "connection refused" in lowered or "errno 111" in lowered:
        return (
            "nothing listens at %s: start the virtual board or the serial server first, and use the"
            " address it prints (`baysense vboard --bootloader` prints `port: socket://...`)" % port
        )
    if "timed out" in lowered:
        return "check that the host and TCP port in %s are reachable" % port
    if "inappropriate ioctl" in lowered or "errno 25" in lowered:
        return "%s is not a serial port: pass the board's device path, such as /dev/ttyUSB0 (see `baysense ports`)" % port
    if "protocol" in lowered and "not known" in lowered:
        return "use a device path, or %s" % URL_EXAMPLE
    return None


port_option = click.option(
    "--port",
    "-p",
    envvar=ENV_PORT,
    help="Serial port of the board: a device path, socket://HOST:PORT, rfc2217://HOST:PORT, "
    "`auto` (the only ESP32 board plugged in) or id:SERIAL (by USB serial number, see "
    "`baysense ports`). Default: $%s." % ENV_PORT,
)


@click.command("ports")
@click.option("--json", "as_json", is_flag=True, help="Print the ports as a JSON list.")
def ports_command(as_json):
    """List serial ports, marking the USB bridges ESP32 boards use."""
    ports = list_ports()
    if as_json:
        click.echo(json.dumps(ports, indent=2))
        return
    if not ports:
        click.echo("no serial ports found")
        return
    rows = [("PORT", "VID:PID", "SERIAL", "LOCATION", "ESP32 BRIDGE", "DESCRIPTION")]
    for port in ports:
        rows.append(
            (
                port["device"],
                port["vid_pid"] or "-",
                port["serial_number"] or "-",
                port["location"] or "-",
                port["bridge"] or "-",
                port["description"] or "-",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
