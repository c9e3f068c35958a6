"""`baysense provision`: give a board its identity, key and gateway, and tell the gateway.

The key is 32 bytes from the OS's secure random source (secrets.token_bytes). It is stored in
the registry, which the gateway reads, and in the board's /config.json; it is never printed,
logged or passed on a command line. The board's config is written atomically and read back
to verify it. When that fails after a new key went into the registry, the registry gets its
previous row back unless the board is read back with the new config.
"""

import hashlib
import ipaddress
import json
import logging
import os
import re
import secrets
import stat
import sys
from pathlib import Path

import click

from . import boards
from .device import Device, literal
from .errors import BaysenseError, ConfigError, DeviceError
from .fleet import selftest
from .ports import port_option, resolve_port
from .registry import Registry

log = logging.getLogger(__name__)

CONFIG_PATH = "/config.json"
KEY_SIZE = 32
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
ENV_WIFI_PASSWORD = "BAYSENSE_WIFI_PASSWORD"
KEEP_ROW = object()  # passed to _write_config() when the registry row kept its key
UNREADABLE = object()  # _board_config_digest(): reading the board's config failed
# The largest Wi-Fi section read back from a board, in bytes of JSON. An SSID has at most 32
# bytes and a WPA2 passphrase at most 63 characters, so this leaves room for escapes.
WIFI_READBACK_MAX_BYTES = 512

# Runs on the board: prints None (no config), 'invalid', 'too long', or the hex of the Wi-Fi
# section's JSON XORed with the pad. Formatted with the config's path and the pad's hex.
READ_WIFI_CODE = """
import json, binascii
try:
    f = open(%r)
except OSError:
    print(None)
else:
    try:
        d = json.dumps(json.load(f).get('wifi') or {}).encode()
    except (ValueError, AttributeError):
        print(repr('invalid'))
    else:
        p = binascii.unhexlify(%r)
        if len(d) > len(p):
            print(repr('too long'))
        else:
            print(repr(binascii.hexlify(bytes(a ^ b for a, b in zip(d, p)))))
        del d, p
    f.close()
"""


def check_device_id(device_id):
    if not DEVICE_ID.match(device_id or ""):
        raise ConfigError(
            "invalid device id %r" % device_id,
            "use 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return device_id


# A DNS label as RFC 1123 allows it in a host name: letters, digits and inner hyphens.
HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# RFC 1035's limit on a whole name, without the trailing dot.
MAX_HOST_NAME_CHARS = 253
GATEWAY_HINT = "use HOST:PORT with a port from 1 to 65535, for example 192.168.1.10:4700"


def check_gateway(address):
    """Check a HOST:PORT gateway address without a DNS lookup; the node resolves HOST itself.

    HOST must be an IPv4 address or a host name. A HOST of numbers and dots only, or of four
    labels with three of them numbers, is taken as an IPv4 address, so 127.0.0.300 or 127.0.0.l
    (a letter l) is rejected here instead of failing in the node's getaddrinfo.
    """
    scheme, has_scheme, rest = (address or "").partition("://")
    if has_scheme:
        # The gateway prints its address as udp://HOST:PORT, which is easy to paste whole.
        raise ConfigError(
            "invalid gateway address %r: the node takes HOST:PORT without a scheme (%s://)" % (address, scheme),
            "write %s; %s" % (rest, GATEWAY_HINT),
        )
    host, separator, port = (address or "").rpartition(":")
    if not separator or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("invalid gateway address %r" % address, GATEWAY_HINT)

    labels = host.split(".")
    numeric = sum(label.isdigit() for label in labels)
    if numeric == len(labels) or (len(labels) == 4 and numeric == 3):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ConfigError(
                "invalid gateway address %r: %r is not an IPv4 address" % (address, host),
                GATEWAY_HINT + ", and an IPv4 HOST of four numbers from 0 to 255",
            ) from None
        return address

    if len(host) > MAX_HOST_NAME_CHARS or not all(HOST_LABEL.match(label) for label in labels):
        raise ConfigError(
            "invalid gateway address %r: %r is not a valid host name" % (address, host),
            GATEWAY_HINT + ", and a host name of dot-separated letters, digits and inner hyphens",
        )
    return address


def node_config(device_id, key, gateway, board, wifi=None, heartbeat_s=60):
    return {
        "device_id": device_id,
        "key": key.hex(),
        "gateway": gateway,
        "wifi": wifi or {},
        "board": board,
        "heartbeat_s": heartbeat_s,
    }


def read_board_wifi(device):
    """Return the Wi-Fi section of the board's /config.json, or None when the board has no config.

    The section contains the Wi-Fi password, and Device.log keeps everything the board prints
    (fleet writes it to the bay's log), so the board prints the section XORed with a one-time
    pad that the host sends and never logs.
    """
    pad = secrets.token_bytes(WIFI_READBACK_MAX_BYTES)
    printed = literal(device.exec(READ_WIFI_CODE % (CONFIG_PATH, pad.hex())).decode().strip())
    if printed is None:
        return None
    if printed in ("invalid", "too long"):
        problem = "not valid JSON" if printed == "invalid" else "longer than %d bytes" % WIFI_READBACK_MAX_BYTES
        raise ConfigError(
            "the Wi-Fi settings in %s on %s are %s, so they cannot be kept" % (CONFIG_PATH, device.port, problem),
            "give them again with --wifi-ssid (fleet: the manifest's [wifi] table), or clear them with --no-wifi",
        )
    masked = bytes.fromhex(printed.decode())
    return json.loads(bytes(a ^ b for a, b in zip(masked, pad)))


def provision(device, registry, device_id, gateway, board, wifi=None, rotate_key=False, heartbeat_s=60):
    """Provision one connected board; return "created", "unchanged", "updated" or "rotated".

    `wifi` is {"ssid", "password"}, {} to clear the board's Wi-Fi settings, or None to keep them.
    """
    check_device_id(device_id)
    check_gateway(gateway)

    existing = registry.device(device_id)
    current = device.sha256(CONFIG_PATH)
    if wifi is None:
        wifi = (read_board_wifi(device) if current is not None else None) or {}
    # A revoked device's key is treated as leaked: provisioning it again gives a new one.
    new_key = existing is None or rotate_key or bool(existing["revoked"])
    if existing is not None and current is None and not new_key:
        # A known device whose board has no config (its flash was erased, or it is another
        # board) starts its frame counter at 1 again. The gateway would reject those frames
        # as replays under the old key, while a new key starts a new counter sequence there.
        log.info("%s is in the registry but its board has no config: issuing a new key", device_id)
        new_key = True
    if new_key:
        key = secrets.token_bytes(KEY_SIZE)
    else:
        key = bytes(existing["key"])
    config = json.dumps(node_config(device_id, key, gateway, board, wifi, heartbeat_s), sort_keys=True).encode()

    if not new_key and current == hashlib.sha256(config).hexdigest():
        return "unchanged"

    # The registry first: once the board restarts with the new key, the gateway must know it.
    # If the board did not get the new key, _write_config() puts the previous row back.
    registry.put_device(device_id, key, board=board["name"], gateway=gateway)
    _write_config(device, registry, device_id, config, existing if new_key else KEEP_ROW)
    if existing is None:
        outcome = "created"
    else:
        outcome = "rotated" if new_key else "updated"
    log.info(
        "provisioned %s on %s: %s, key version %d", device_id, device.port, outcome, registry.device(device_id)["key_version"]
    )
    return outcome


def _write_config(device, registry, device_id, config, previous):
    """Write and verify the board's config; on failure, leave the registry and the board agreeing.

    `previous` is the registry row from before a new key was put there, None for a new
    device, or KEEP_ROW when the key did not change. After a failure the registry keeps the
    new key only if the board is read back with the new config.
    """
    digest = hashlib.sha256(config).hexdigest()
    try:
        device.write_file(CONFIG_PATH, config)
        if device.sha256(CONFIG_PATH) != digest:
            raise DeviceError(
                "config.json read back from the board differs from what was written (%s)" % device.port,
                "check the board's filesystem (is it full?) and provision again",
            )
        return
    except (DeviceError, OSError, KeyboardInterrupt) as error:
        failure = error

    if previous is KEEP_ROW:
        if isinstance(failure, KeyboardInterrupt):
            raise failure
        raise _write_error(device, failure, "the key did not change, so the gateway still accepts the node's reports")
    board_digest = _board_config_digest(device)
    if board_digest == digest and not isinstance(failure, KeyboardInterrupt):
        log.warning("writing %s on %s failed (%s), but the board has the new config", CONFIG_PATH, device.port, failure)
        return
    if board_digest == digest:
        state = "the board has the new key, and so has the registry"
    else:
        registry.restore_device(device_id, previous)
        if board_digest is UNREADABLE:
            state = "the registry has the previous key again, but the board could not be read back and may have the new one"
        elif previous is None:
            state = "the registry no longer lists the new device, and the board did not get its config"
        else:
            state = "the registry has the previous key again, as the board has"
        log.warning("provisioning %s on %s failed: %s", device_id, device.port, state)
    if isinstance(failure, KeyboardInterrupt):
        raise failure
    raise _write_error(device, failure, state)


def _board_config_digest(device):
    """Return the SHA-256 of the board's config, None when it has none, or UNREADABLE."""
    try:
        return device.sha256(CONFIG_PATH)
    except (DeviceError, OSError) as error:
        log.warning("reading %s back from %s failed: %s", CONFIG_PATH, device.port, error)
        return UNREADABLE


def _write_error(device, failure, state):
    message = getattr(failure, "message", None) or str(failure) or type(failure).__name__
    fix = getattr(failure, "hint", None)
    if fix:
        # The failure's own hint is more specific than a plain retry, so it stays.
        message = "%s (%s)" % (message, fix)
    return DeviceError(
        "writing %s to %s failed: %s" % (CONFIG_PATH, device.port, message), "%s. Run the same provision command again" % state
    )


def check_password_file(path):
    """Raise ConfigError when group or others can read the Wi-Fi password file, as for the registry."""
    mode = stat.S_IMODE(Path(path).stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            "Wi-Fi password file %s is readable by group or others (mode %o)" % (path, mode),
            "it contains the Wi-Fi password: run `chmod 600 %s`" % path,
        )


def read_wifi_password(password_file):
    """Read the Wi-Fi password from a private file, the environment or a prompt, never from argv."""
    if password_file:
        check_password_file(password_file)
        return Path(password_file).read_text().strip()
    if os.environ.get(ENV_WIFI_PASSWORD) is not None:
        return os.environ[ENV_WIFI_PASSWORD]
    if sys.stdin.isatty():
        return click.prompt("Wi-Fi password", hide_input=True, default="", show_default=False)
    raise ConfigError(
        "no Wi-Fi password given",
        "pass --wifi-password-file FILE or set %s (never on the command line)" % ENV_WIFI_PASSWORD,
    )


@click.command("provision")
@port_option
@click.option("--device-id", required=True, help="The device's id: 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit.")
@click.option("--gateway", required=True, help="HOST:PORT of the gateway's UDP socket.")
@click.option("--board", "board_name", default="virtual", show_default=True, help="Board definition (boards/NAME.json).")
@click.option("--registry", "registry_path", type=click.Path(dir_okay=False, path_type=Path), help="Registry database. Default: $BAYSENSE_REGISTRY or ~/.local/share/baysense/registry.db.")
@click.option("--wifi-ssid", help="Wi-Fi network name for the node. Without it, the board keeps its Wi-Fi settings.")
@click.option("--no-wifi", is_flag=True, help="Remove the Wi-Fi network name and password from the board.")
@click.option("--wifi-password-file", type=click.Path(exists=True, dir_okay=False), help="File holding the Wi-Fi password. Else $BAYSENSE_WIFI_PASSWORD, else a prompt.")
@click.option("--rotate-key", is_flag=True, help="Give the device a new key; the gateway learns it from the registry.")
@click.option("--heartbeat", "heartbeat_s", type=click.IntRange(5, 86400), default=60, show_default=True, help="Seconds between heartbeats.")
@click.option("--reset/--no-reset", default=True, show_default=True, help="Soft-reset the board afterwards, so the firmware runs again with the config.")
@click.option(
    "--check",
    is_flag=True,
    help="Then run the self-test that `baysense fleet` runs: read the sensor once and wait until the gateway acknowledges a heartbeat.",
)
def provision_command(
    port, device_id, gateway, board_name, registry_path, wifi_ssid, no_wifi, wifi_password_file, rotate_key, heartbeat_s, reset, check
):
    """Give a board its device id, a fresh key and the gateway address."""
    board = boards.load(board_name)
    wifi = None  # keep the board's
    if wifi_ssid and no_wifi:
        raise ConfigError("--wifi-ssid and --no-wifi both given", "pass --wifi-ssid to set the network, or --no-wifi to clear it")
    if no_wifi:
        wifi = {}
    if wifi_ssid:
        wifi = {"ssid": wifi_ssid, "password": read_wifi_password(wifi_password_file)}
    with Registry(registry_path) as registry, Device(resolve_port(port)) as device:
        try:
            outcome = provision(device, registry, device_id, gateway, board, wifi, rotate_key, heartbeat_s)
        except BaysenseError:
            if reset:
                _restart_after_failure(device)
            raise
        click.echo("%s: %s" % (device_id, outcome))
        try:
            if check:
                # Provision cannot tell by itself that a gateway listens at --gateway.
                result = selftest.run(device, device_id)
                click.echo(
                    "%s: self-test passed: sensor %s, gateway acknowledged heartbeat %d after %d ms"
                    % (device_id, result["sensor_value"], result["heartbeats"], result["ack_ms"])
                )
        finally:
            # Provisioning stopped the running firmware (Ctrl-C). Without a restart, even when
            # nothing changed or the self-test failed, the node stays at the prompt until its
            # watchdog fires.
            if reset:
                device.soft_reset(run_main=True)


def _restart_after_failure(device):
    """Restart the firmware that provisioning stopped, with whichever config the board has."""
    try:
        device.soft_reset(run_main=True)
    except (DeviceError, OSError) as error:
        log.warning("restarting the firmware on %s failed: %s", device.port, error)
