"""The site-wide step: authorize the site's gateway on its ZeroTier network.

Tokens are read as the zerotier package reads them (a token file, else its environment
variables and default files), never from the manifest itself.
"""

import logging
import time

from ..errors import BaysenseError
from ..zerotier.errors import TokenError, ZeroTierAuthError, ZeroTierConnectionError, ZeroTierNotFoundError
from ..zerotier.members import CentralMembers, ControllerMembers, authorize_member
from .progress import FAILED, OK, SITE, fingerprint
from .steps import Outcome

log = logging.getLogger(__name__)

STEP = "zerotier"


def member_name(manifest):
    return "baysense gateway %s" % manifest.community


def member_description(manifest):
    return "Baysense gateway of %s, UDP %s" % (manifest.community, manifest.gateway)


def sent_description(manifest):
    """Return the description to send, or None where the API would drop it.

    ZeroTier One's controller stores no member description, and the manifest has no key that
    requests one, so sending it would only log a warning on every run.
    """
    return member_description(manifest) if manifest.zerotier.api == "central" else None


def connect(settings):
    """Return the members API the manifest names: a self-hosted controller or Central."""
    kind = CentralMembers if settings.api == "central" else ControllerMembers
    return kind.connect(settings.url, settings.token_file)


def site_fingerprint(manifest):
    settings = manifest.zerotier
    return fingerprint(settings.network, settings.member, settings.api, settings.url,
                       member_name(manifest), member_description(manifest))


def authorize_gateway(manifest, progress, force=False):
    """Authorize the gateway's member once per manifest change and return an Outcome.

    A failure the user can fix (a BaysenseError) becomes a failed Outcome, so the boards go on.
    """
    settings = manifest.zerotier
    expected = site_fingerprint(manifest)
    label = "%s on %s" % (settings.member, settings.network)
    if not force and progress.is_done(SITE, STEP, expected):
        return Outcome(SITE, label, "skipped", STEP, "authorized earlier")

    started = time.monotonic()
    try:
        api = connect(settings)
        member = authorize_member(api, settings.network, settings.member, member_name(manifest), sent_description(manifest))
    except BaysenseError as error:
        error.hint = manifest_hint(error, settings) or error.hint
        log.error("authorizing gateway %s failed: %s", label, error)
        progress.record(SITE, STEP, FAILED, str(error), port=label)
        return Outcome(SITE, label, FAILED, STEP, str(error), time.monotonic() - started)

    seconds = time.monotonic() - started
    addresses = ", ".join(member.ip_assignments) or "no address yet"
    detail = "authorized through the %s (%s)" % (member.source, addresses)
    progress.record(SITE, STEP, OK, detail, expected, label, seconds)
    return Outcome(SITE, label, OK, STEP, detail, seconds)


def manifest_hint(error, settings):
    """Return the fix for `error` in terms of the manifest's [zerotier] keys, or None to keep its own.

    The zerotier package's hints name the `baysense zerotier` options (--central,
    --token-file, --service-url), which a fleet run does not take.
    """
    central = settings.api == "central"
    if isinstance(error, (TokenError, ZeroTierAuthError)) and "--" in (error.hint or ""):
        if central:
            return ("set token_file in the manifest's [zerotier] table to a file (mode 600) containing a valid"
                    " Central API token from the Account page of my.zerotier.com, or export ZEROTIER_CENTRAL_TOKEN")
        return ("set token_file in the manifest's [zerotier] table to a file (mode 600) containing the"
                " authtoken.secret of the zerotier-one that hosts the controller")
    if isinstance(error, ZeroTierNotFoundError) and error.message.startswith("network "):
        if central:
            return ("check network in the manifest's [zerotier] table; for a network on a self-hosted"
                    " controller set api = \"controller\"")
        return ("check network in the manifest's [zerotier] table: a self-hosted controller hosts only networks"
                " whose id starts with its node id; for a network on my.zerotier.com set api = \"central\"")
    if isinstance(error, ZeroTierConnectionError):
        return "check url in the manifest's [zerotier] table and that the %s is reachable from this host" % (
            "ZeroTier Central API" if central else "zerotier-one hosting the controller")
    return None
