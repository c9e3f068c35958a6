# The node's configuration: /config.json, written by `baysense provision`.
#
#   device_id   str, 1 to 32 bytes
#   key         64 hex digits: the device's 32-byte HMAC key
#   gateway     "host:port" of the gateway's UDP socket
#   wifi        {"ssid": ..., "password": ...}
#   board       the board definition (boards/*.json): sensor and detector settings
#   heartbeat_s seconds between heartbeats (optional)

import json

from binascii import unhexlify

PATH = "/config.json"
REQUIRED = ("device_id", "key", "gateway", "board")


class ConfigError(Exception):
    pass


def load(path=PATH):
    try:
        with open(path) as f:
            config = json.load(f)
    except OSError:
        raise ConfigError("no %s: provision this board with `baysense provision`" % path)
    except ValueError:
        raise ConfigError("%s is not valid JSON: provision the board again" % path)
    for name in REQUIRED:
        if name not in config:
            raise ConfigError("%s has no %r: provision the board again" % (path, name))
    key = unhexlify(config["key"])
    if len(key) != 32:
        raise ConfigError("the key in %s is not 32 bytes: provision the board again" % path)
    config["key"] = key
    return config
