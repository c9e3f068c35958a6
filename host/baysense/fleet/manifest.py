"""The fleet manifest: a site's gateway, firmware and bays, read from TOML or CSV.

The whole manifest is checked before any board is touched, and every problem is reported with
its line and field, so a typo in bay 37 does not surface after 36 boards were flashed.

TOML (see docs/examples/site.toml):

    community = "harbour-street"        # the site's name
    gateway = "10.0.0.2:5683"           # HOST:PORT of the gateway's UDP socket
    board = "esp32-devkitc-hcsr04"      # default board definition for the bays
    heartbeat_s = 60
    [firmware]                          # optional: a MicroPython image to flash first
    image = "micropython-esp32.bin"     # relative to the manifest's folder
    flash = true
    [wifi]                              # optional
    ssid = "site-net"
    password_file = "wifi.secret"       # the password itself never goes into a manifest
    [zerotier]                          # optional: authorize the gateway on this network
    network = "8056c2e21c000001"
    member = "abcdef0123"               # the gateway's ZeroTier address
    api = "controller"                  # or "central"
    [[bays]]
    id = "A-01"
    port = "/dev/ttyUSB0"               # or serial = "0001A2B3", or port = "auto"

CSV has one row per bay with the bay columns (id, device_id, port, serial, flash_port, board)
and the site columns (SITE_COLUMNS). A site cell may be left empty after the first row that
sets it, but must not contradict it.
"""

import csv
import io
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .. import boards
from ..errors import ConfigError
from ..provision import DEVICE_ID, check_device_id, check_gateway
from ..zerotier.ids import validate_member_id, validate_network_id

AUTO = "auto"
# A community name has a device id's form: it keys the site's progress rows in the registry.
COMMUNITY = DEVICE_ID
DEFAULT_HEARTBEAT_S = 60
# The node's heartbeat range that `baysense provision --heartbeat` accepts too.
HEARTBEAT_RANGE_S = (5, 86400)
ZEROTIER_APIS = ("controller", "central")
# A site with more bays than this is more likely a pasted column than a real site.
MAX_BAYS = 10000

SITE_KEYS = {"community", "gateway", "board", "heartbeat_s", "firmware", "wifi", "zerotier", "bays"}
FIRMWARE_KEYS = {"image", "flash", "chip", "erase"}
WIFI_KEYS = {"ssid", "password_file"}
ZEROTIER_KEYS = {"network", "member", "api", "url", "token_file"}
BAY_KEYS = {"id", "device_id", "port", "serial", "flash_port", "board"}

# CSV column -> (TOML table or None, key) of the same setting.
SITE_COLUMNS = {
    "community": (None, "community"),
    "gateway": (None, "gateway"),
    "heartbeat_s": (None, "heartbeat_s"),
    "firmware": ("firmware", "image"),
    "flash": ("firmware", "flash"),
    "chip": ("firmware", "chip"),
    "erase": ("firmware", "erase"),
    "wifi_ssid": ("wifi", "ssid"),
    "wifi_password_file": ("wifi", "password_file"),
    "zerotier_network": ("zerotier", "network"),
    "zerotier_member": ("zerotier", "member"),
    "zerotier_api": ("zerotier", "api"),
    "zerotier_url": ("zerotier", "url"),
    "zerotier_token_file": ("zerotier", "token_file"),
}
TRUE_WORDS = {"true", "yes", "1"}
FALSE_WORDS = {"false", "no", "0", ""}

_TABLE_ARRAY = re.compile(r"^\[\[\s*([A-Za-z0-9_-]+)\s*\]\]")
_TABLE = re.compile(r"^\[\s*([A-Za-z0-9_-]+)\s*\]")
_KEY = re.compile(r"""^(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""")


@dataclass(frozen=True)
class Problem:
    """One invalid value: where it is, what is wrong and how to fix it."""

    line: int
    field: str
    message: str
    fix: str

    def __str__(self):
        return "line %d, field %r: %s (%s)" % (self.line, self.field, self.message, self.fix)


class ManifestError(ConfigError):
    """A manifest with one or more invalid values; `problems` lists them all."""

    def __init__(self, path, problems):
        self.path = path
        self.problems = sorted(problems, key=lambda problem: problem.line)
        count = len(self.problems)
        super().__init__(
            "invalid manifest %s (%d problem%s)" % (path, count, "" if count == 1 else "s"),
            "fix these and run again:\n" + "\n".join("  %s:%s" % (path, problem) for problem in self.problems),
        )


@dataclass(frozen=True)
class ZeroTierSettings:
    network: str
    member: str
    api: str
    url: object  # str or None: the default URL of the API
    token_file: object  # Path or None: the zerotier package's default places


@dataclass(frozen=True)
class Bay:
    """One bay: its id, the device id its board gets, and how to find the board."""

    id: str
    device_id: str
    port: object  # a port, "auto", or None when `serial` names the board
    serial: object  # a USB serial number, or None
    flash_port: object  # where the ROM loader listens when it is not `port`, or None
    board_name: str
    board: dict = field(repr=False, compare=False)
    line: int = field(default=0, compare=False)

    @property
    def is_auto(self):
        return self.port == AUTO

    @property
    def board_spec(self):
        """The board as the manifest names it: a port, `id:SERIAL` or `auto`."""
        return self.port if self.serial is None else "id:%s" % self.serial


@dataclass(frozen=True)
class Manifest:
    path: Path
    community: str
    gateway: str
    heartbeat_s: int
    image: object  # Path or None
    flash: bool
    chip: str
    erase: bool
    wifi_ssid: object
    wifi_password_file: object  # Path or None
    zerotier: object  # ZeroTierSettings or None
    bays: tuple

    def bay(self, bay_id):
        for bay in self.bays:
            if bay.id == bay_id:
                return bay
        raise KeyError(bay_id)


def load(path):
    """Read and validate a manifest (.toml or .csv); raise ManifestError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError("manifest not found (%s)" % path, "check the path") from None
    except UnicodeDecodeError as error:
        raise ConfigError("manifest %s is not UTF-8 text" % path, "save it as UTF-8 (%s)" % error.reason) from None
    suffix = path.suffix.lower()
    problems = []
    if suffix == ".toml":
        document, lines = parse_toml(text, path)
    elif suffix == ".csv":
        document, lines, problems = parse_csv(text, path)
    else:
        raise ConfigError("unknown manifest type %r (%s)" % (path.suffix, path), "name it .toml or .csv")
    return validate(document, lines, path, problems)


# -- TOML


def parse_toml(text, path):
    """Return (document, Lines) of a TOML manifest."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line = getattr(error, "lineno", None) or _line_from_message(str(error))
        raise ManifestError(path, [Problem(line, "-", "invalid TOML: %s" % error, "fix the syntax")]) from None
    return document, toml_lines(text)


def _line_from_message(message):
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else 1


def toml_lines(text):
    """Map each key of a manifest to its line, scanning the text's table headers and keys.

    NOTE: keys inside multi-line strings or arrays, and bays given as inline tables, are not
    seen. Their problems are reported at the nearest line that is seen (the table's header).
    """
    lines = Lines()
    table = ()
    counts = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        array = _TABLE_ARRAY.match(stripped)
        if array:
            name = array.group(1)
            index = counts.get(name, 0)
            counts[name] = index + 1
            table = (name, index)
            lines.keys[table] = number
            continue
        plain = _TABLE.match(stripped)
        if plain:
            table = (plain.group(1),)
            lines.keys[table] = number
            continue
        key = _KEY.match(stripped)
        if key:
            name = key.group(1) or key.group(2) or key.group(3)
            lines.keys.setdefault(table + (name,), number)
    return lines


class Lines:
    """The line of each part of the manifest: (table..., key) -> line number."""

    def __init__(self):
        self.keys = {}

    def of(self, *where):
        """Return the line of a key, else of its table, else 1."""
        while where:
            if where in self.keys:
                return self.keys[where]
            where = where[:-1]
        return 1


# -- CSV


def parse_csv(text, path):
    """Return (document, Lines, problems) of a CSV manifest, turned into the TOML document's shape.

    A broken header raises ManifestError at once; problems in rows are returned, so that
    validate() reports them together with its own.
    """
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in (reader.fieldnames or [])]
    problems = []
    known = set(SITE_COLUMNS) | BAY_KEYS
    for name in header:
        if name not in known:
            problems.append(Problem(1, name, "unknown column", "use %s" % ", ".join(sorted(known))))
    for required in ("community", "gateway", "id"):
        if required not in header:
            problems.append(Problem(1, required, "missing column", "add a %r column" % required))
    if problems:
        raise ManifestError(path, problems)

    lines = Lines()
    document = {"bays": []}
    tables = {"firmware": {}, "wifi": {}, "zerotier": {}}
    for index, row in enumerate(reader):
        # line_num is the reader's position after the row, so it is the row's last line.
        number = reader.line_num
        row = {(key or "").strip(): (value or "").strip() for key, value in row.items() if key is not None}
        if None in row or any(isinstance(value, list) for value in row.values()):
            problems.append(Problem(number, "-", "more cells than columns", "remove the extra cells or add a header"))
        bay = {}
        for column, value in row.items():
            if column in BAY_KEYS:
                if value:
                    bay[column] = value
                    lines.keys[("bays", index, column)] = number
                continue
            if column not in SITE_COLUMNS or not value:
                continue
            table_name, key = SITE_COLUMNS[column]
            target = document if table_name is None else tables[table_name]
            where = (key,) if table_name is None else (table_name, key)
            typed = _csv_value(key, value)
            if key in target and target[key] != typed:
                problems.append(
                    Problem(
                        number,
                        column,
                        "%r differs from %r set on line %d" % (value, target[key], lines.of(*where)),
                        "a site has one %s: leave the cell empty or make it match" % column,
                    )
                )
                continue
            if key not in target:
                target[key] = typed
                lines.keys[where] = number
        lines.keys[("bays", index)] = number
        document["bays"].append(bay)
    for name, table in tables.items():
        if table:
            document[name] = table
    return document, lines, problems


def _csv_value(key, value):
    """Turn a CSV cell into the type the TOML form has, so both are validated alike."""
    if key in ("flash", "erase"):
        lowered = value.lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        return value  # validate() reports it as not a boolean
    if key == "heartbeat_s":
        return int(value) if value.isdigit() else value
    return value


# -- validation


def validate(document, lines, path, problems=()):
    """Return a Manifest from a parsed document, or raise ManifestError listing every problem
    (`problems` are those the parser found already)."""
    checker = _Checker(lines, path.parent)
    checker.problems.extend(problems)
    problems = checker.problems

    checker.unknown_keys(document, SITE_KEYS, ())
    community = checker.text(document, (), "community", required=True)
    if community is not None and not COMMUNITY.match(community):
        problems.append(
            Problem(lines.of("community"), "community", "invalid community name %r" % community,
                    "use 1 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit")
        )
    gateway = checker.text(document, (), "gateway", required=True)
    if gateway is not None:
        checker.call(check_gateway, gateway, ("gateway",), "gateway")
    default_board = checker.text(document, (), "board")
    heartbeat_s = checker.integer(document, (), "heartbeat_s", DEFAULT_HEARTBEAT_S, HEARTBEAT_RANGE_S)

    firmware = checker.table(document, "firmware", FIRMWARE_KEYS)
    image = checker.path(firmware, ("firmware",), "image")
    flash = checker.boolean(firmware, ("firmware",), "flash", False)
    erase = checker.boolean(firmware, ("firmware",), "erase", False)
    chip = checker.text(firmware, ("firmware",), "chip") or "auto"
    if chip != "auto" and chip not in boards.CHIPS:
        problems.append(
            Problem(lines.of("firmware", "chip"), "firmware.chip", "unknown chip %r" % chip,
                    "use auto or one of %s" % ", ".join(sorted(boards.CHIPS)))
        )
    if flash and image is None and not any(p.field == "firmware.image" for p in problems):
        problems.append(
            Problem(lines.of("firmware", "flash"), "firmware.image", "flash = true but no image named",
                    "add image = \"FILE.bin\" to [firmware], or set flash = false")
        )

    wifi = checker.table(document, "wifi", WIFI_KEYS)
    wifi_ssid = checker.text(wifi, ("wifi",), "ssid")
    wifi_password_file = checker.path(wifi, ("wifi",), "password_file")

    zerotier = _zerotier(checker, checker.table(document, "zerotier", ZEROTIER_KEYS))

    bays = _bays(checker, document.get("bays"), default_board)

    if problems:
        raise ManifestError(path, problems)
    return Manifest(
        path=path,
        community=community,
        gateway=gateway,
        heartbeat_s=heartbeat_s,
        image=image,
        flash=flash,
        chip=chip,
        erase=erase,
        wifi_ssid=wifi_ssid,
        wifi_password_file=wifi_password_file,
        zerotier=zerotier,
        bays=tuple(bays),
    )


def _zerotier(checker, table):
    if not table:
        return None
    where = ("zerotier",)
    network = checker.text(table, where, "network", required=True)
    member = checker.text(table, where, "member", required=True)
    api = checker.text(table, where, "api") or "controller"
    url = checker.text(table, where, "url")
    token_file = checker.path(table, where, "token_file")
    if network is not None:
        checker.call(validate_network_id, network, where + ("network",), "zerotier.network")
    if member is not None:
        checker.call(validate_member_id, member, where + ("member",), "zerotier.member")
    if api not in ZEROTIER_APIS:
        checker.problems.append(
            Problem(checker.lines.of("zerotier", "api"), "zerotier.api", "unknown API %r" % api, "use controller or central")
        )
    return ZeroTierSettings(network, member, api, url, token_file)


def _bays(checker, entries, default_board):
    lines = checker.lines
    problems = checker.problems
    if not isinstance(entries, list) or not entries:
        problems.append(Problem(lines.of("bays"), "bays", "no bays", "add at least one [[bays]] table (one CSV row per bay)"))
        return []
    if len(entries) > MAX_BAYS:
        problems.append(Problem(lines.of("bays"), "bays", "%d bays" % len(entries), "split sites above %d bays" % MAX_BAYS))
        return []

    bays = []
    seen_ids = {}
    seen_device_ids = {}
    seen_ports = {}
    loaded_boards = {}
    for index, entry in enumerate(entries):
        where = ("bays", index)
        line = lines.of(*where)
        if not isinstance(entry, dict):
            problems.append(Problem(line, "bays", "a bay must be a table", "write it as [[bays]] with id = ..."))
            continue
        checker.unknown_keys(entry, BAY_KEYS, where)
        bay_id = checker.text(entry, where, "id", required=True)
        own_device_id = checker.text(entry, where, "device_id")
        device_id = own_device_id or bay_id
        port = checker.text(entry, where, "port")
        serial = checker.text(entry, where, "serial")
        flash_port = checker.text(entry, where, "flash_port")
        board_name = checker.text(entry, where, "board") or default_board

        duplicate_id = bay_id in seen_ids
        if bay_id is not None:
            checker.call(check_device_id, bay_id, where + ("id",), "id")
            _unique(checker, seen_ids, bay_id, where + ("id",), "id", "bay id")
        if own_device_id is not None:
            checker.call(check_device_id, own_device_id, where + ("device_id",), "device_id")
        # A device id taken from a duplicate bay id is reported once, as the bay id.
        if device_id is not None and not (duplicate_id and own_device_id is None):
            _unique(checker, seen_device_ids, device_id, where + ("device_id",), "device_id", "device id")
        if port is None and serial is None:
            problems.append(
                Problem(line, "port", "bay %s has no port or serial" % (bay_id or index + 1),
                        "give port = \"/dev/ttyUSB0\", serial = \"USB SERIAL NUMBER\" or port = \"auto\"")
            )
        elif port is not None and serial is not None:
            problems.append(
                Problem(lines.of(*where, "serial"), "serial", "both port and serial are given",
                        "keep one: the port, or the board's USB serial number")
            )
        elif port is not None and port != AUTO:
            _unique(checker, seen_ports, port, where + ("port",), "port", "port")
        elif serial is not None:
            _unique(checker, seen_ports, "id:" + serial, where + ("serial",), "serial", "USB serial number")

        board = None
        if board_name is None:
            problems.append(
                Problem(line, "board", "no board definition for bay %s" % (bay_id or index + 1),
                        "set board = \"NAME\" at the top of the manifest or in the bay (known: %s)" % ", ".join(boards.names()))
            )
        elif board_name in loaded_boards:
            board = loaded_boards[board_name]
        else:
            try:
                board = boards.load(board_name)
            except ConfigError as error:
                problems.append(Problem(lines.of(*where, "board") if "board" in entry else lines.of("board"), "board",
                                        error.message, error.hint or "fix the board name"))
            loaded_boards[board_name] = board

        if bay_id is not None and device_id is not None and board is not None:
            bays.append(Bay(bay_id, device_id, port, serial, flash_port, board_name, board, line))
    return bays


def _unique(checker, seen, value, where, field_name, what):
    line = checker.lines.of(*where)
    if value in seen:
        checker.problems.append(
            Problem(line, field_name, "%s %r is also used on line %d" % (what, value, seen[value]), "give each bay its own %s" % what)
        )
    else:
        seen[value] = line


class _Checker:
    """Type checks that append a Problem instead of raising, so one run reports them all."""

    def __init__(self, lines, base_dir):
        self.lines = lines
        self.base_dir = base_dir
        self.problems = []

    def _problem(self, where, message, fix):
        self.problems.append(Problem(self.lines.of(*where), ".".join(str(part) for part in _named(where)), message, fix))

    def unknown_keys(self, table, known, where):
        for key in sorted(set(table) - known):
            self._problem(where + (key,), "unknown field", "remove it or fix its spelling; known: %s" % ", ".join(sorted(known)))

    def table(self, document, name, known):
        value = document.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self._problem((name,), "must be a table", "write it as [%s]" % name)
            return {}
        self.unknown_keys(value, known, (name,))
        return value

    def text(self, table, where, key, required=False):
        value = table.get(key)
        if value is None:
            if required:
                self._problem(where + (key,), "missing", "add %s = \"...\"" % key)
            return None
        if not isinstance(value, str) or not value.strip():
            self._problem(where + (key,), "must be non-empty text, got %r" % (value,), "quote the value")
            return None
        return value.strip()

    def integer(self, table, where, key, default, limits):
        value = table.get(key, default)
        low, high = limits
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self._problem(where + (key,), "must be a whole number from %d to %d, got %r" % (low, high, value), "fix the number")
            return default
        return value

    def boolean(self, table, where, key, default):
        value = table.get(key, default)
        if not isinstance(value, bool):
            self._problem(where + (key,), "must be true or false, got %r" % (value,), "write true or false")
            return default
        return value

    def path(self, table, where, key):
        value = self.text(table, where, key)
        if value is None:
            return None
        resolved = (self.base_dir / value).expanduser()
        if not resolved.is_file():
            self._problem(where + (key,), "file not found: %s" % resolved, "give a path relative to the manifest's folder")
            return None
        return resolved

    def call(self, check, value, where, field_name):
        """Run one of the package's own checks and turn its ConfigError into a Problem."""
        try:
            check(value)
        except ConfigError as error:
            self.problems.append(Problem(self.lines.of(*where), field_name, error.message, error.hint or "fix the value"))


def _named(where):
    """Return a key path's field name without the bay's index: ("bays", 3, "port") -> ("port",)."""
    return tuple(part for part in where if not isinstance(part, int) and part != "bays") or ("bays",)
