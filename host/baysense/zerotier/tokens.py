"""API tokens for the ZeroTier local service and ZeroTier Central.

Tokens are read from files or the environment, never from the command line, because argv
is visible to every user of the host (`ps`). The value lives in a `Secret`, whose str()
and repr() hide it, so a token cannot reach a log line or an error message by accident.

Local service token (also used for a self-hosted controller on that service), first found of:
  1. the file named by `--token-file` or BAYSENSE_ZT_TOKEN_FILE;
  2. /var/lib/zerotier-one/authtoken.secret, the service's own file on Linux (root only);
  3. ~/.zeroTierOneAuthToken, a user's copy, which zerotier-cli also reads.

Central token, first found of:
  1. the file named by `--central-token-file` or BAYSENSE_ZT_CENTRAL_TOKEN_FILE;
  2. the environment variable ZEROTIER_CENTRAL_TOKEN.

A token file must not be readable by group or others.
"""

import logging
import os
import stat
from pathlib import Path

from .errors import TokenError

log = logging.getLogger(__name__)

ENV_SERVICE_TOKEN_FILE = "BAYSENSE_ZT_TOKEN_FILE"
ENV_CENTRAL_TOKEN_FILE = "BAYSENSE_ZT_CENTRAL_TOKEN_FILE"
ENV_CENTRAL_TOKEN = "ZEROTIER_CENTRAL_TOKEN"

SYSTEM_TOKEN_FILE = Path("/var/lib/zerotier-one/authtoken.secret")
USER_TOKEN_FILE_NAME = ".zeroTierOneAuthToken"

# Tokens are a few dozen characters, so a file larger than this is the wrong file.
MAX_TOKEN_BYTES = 4096

MASK = "***"


class Secret:
    """A token value that hides itself from str(), repr() and formatting."""

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value

    def reveal(self):
        """Return the token itself: call this only to build a request header."""
        return self._value

    def redact(self, text):
        """Return `text` with every occurrence of the token replaced by ***."""
        if not self._value:
            return text
        return text.replace(self._value, MASK)

    def __repr__(self):
        return "Secret(%s)" % MASK

    __str__ = __repr__

    def __eq__(self, other):
        return isinstance(other, Secret) and other._value == self._value

    __hash__ = None


def user_token_file():
    return Path.home() / USER_TOKEN_FILE_NAME


def load_service_token(token_file=None):
    """Return the local service's token as a Secret, searching the places listed above."""
    if token_file is None:
        token_file = os.environ.get(ENV_SERVICE_TOKEN_FILE) or None
    if token_file is not None:
        try:
            return read_token_file(Path(token_file))
        except (FileNotFoundError, PermissionError) as error:
            raise TokenError(
                "cannot read ZeroTier service token file %s (%s)" % (token_file, error.strerror),
                "check the path given with --token-file or %s" % ENV_SERVICE_TOKEN_FILE,
            ) from None

    candidates = [SYSTEM_TOKEN_FILE, user_token_file()]
    unreadable = []
    for path in candidates:
        try:
            return read_token_file(path)
        except FileNotFoundError:
            continue
        except PermissionError:
            unreadable.append(path)
    if unreadable:
        raise TokenError(
            "ZeroTier service token %s is not readable by this user" % unreadable[0],
            "run as root, or copy it once with `sudo cat %s > ~/%s && chmod 600 ~/%s`, "
            "or set %s to a readable copy"
            % (SYSTEM_TOKEN_FILE, USER_TOKEN_FILE_NAME, USER_TOKEN_FILE_NAME, ENV_SERVICE_TOKEN_FILE),
        )
    raise TokenError(
        "ZeroTier service token not found in %s" % " or ".join(str(path) for path in candidates),
        "install and start zerotier-one (it writes authtoken.secret), or set %s to the token file"
        % ENV_SERVICE_TOKEN_FILE,
    )


def load_central_token(token_file=None):
    """Return the ZeroTier Central API token as a Secret, from a file or ZEROTIER_CENTRAL_TOKEN."""
    if token_file is None:
        token_file = os.environ.get(ENV_CENTRAL_TOKEN_FILE) or None
    if token_file is not None:
        try:
            return read_token_file(Path(token_file))
        except (FileNotFoundError, PermissionError) as error:
            raise TokenError(
                "cannot read Central token file %s (%s)" % (token_file, error.strerror),
                "check the path given with --central-token-file or %s" % ENV_CENTRAL_TOKEN_FILE,
            ) from None

    value = os.environ.get(ENV_CENTRAL_TOKEN, "").strip()
    if not value:
        raise TokenError(
            "ZeroTier Central token not set",
            "create an API token on the Account page of my.zerotier.com, then put it in a file "
            "(mode 600) named by --central-token-file or %s, or export %s"
            % (ENV_CENTRAL_TOKEN_FILE, ENV_CENTRAL_TOKEN),
        )
    check_header_safe(value, "environment variable %s" % ENV_CENTRAL_TOKEN)
    return Secret(value)


def read_token_file(path):
    """Read a token file into a Secret.

    Raises FileNotFoundError or PermissionError unchanged, so callers can try the next
    place, and TokenError when the file exists but cannot be used.
    """
    path = Path(path).expanduser()
    with open(path, "rb") as stream:
        mode = stat.S_IMODE(os.fstat(stream.fileno()).st_mode)
        raw = stream.read(MAX_TOKEN_BYTES + 1)

    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenError(
            "token file %s is readable by group or others (mode %o)" % (path, mode),
            "it grants control of ZeroTier: run `chmod 600 %s`" % path,
        )
    if len(raw) > MAX_TOKEN_BYTES:
        raise TokenError(
            "token file %s is larger than %d bytes" % (path, MAX_TOKEN_BYTES),
            "point the token file setting at the file that contains only the token",
        )
    try:
        value = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise TokenError(
            "token file %s is not ASCII text" % path,
            "point the token file setting at the file that contains only the token",
        ) from None
    if not value:
        raise TokenError("token file %s is empty" % path, "write the token into it, on one line")
    check_header_safe(value, "token file %s" % path)
    log.debug("read API token from %s", path)
    return Secret(value)


def check_header_safe(value, source):
    """Raise TokenError if the token contains whitespace or control characters.

    Such a character would split or corrupt the HTTP header that carries the token.
    """
    if any(character.isspace() or not character.isprintable() for character in value):
        raise TokenError(
            "%s contains spaces, line breaks or control characters" % source,
            "a token is one word: write only the token, on one line",
        )
