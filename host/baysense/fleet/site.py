"""The site-wide step: authorize the site's gateway on its ZeroTier network.

Tokens are read as the zerotier package reads them (a token file, else its environment
variables and default files), never from the manifest itself.
"""

import logging
import time

from ..errors import BaysenseError
from ..zerotier.members import CentralMembers, ControllerMembers, authorize_member
from .progress import FAILED, OK, SITE, fingerprint
from .steps import Outcome

log = logging.getLogger(__name__)

STEP = "zerotier"


def member_name(manifest):
    return "baysense gateway %s" % manifest.community


def member_description(manifest):
    return "Baysense gateway of %s, UDP %s" % (manifest.community, manifest.gateway)


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
        member = authorize_member(api, settings.network, settings.member, member_name(manifest), member_description(manifest))
    except BaysenseError as error:
        log.error("authorizing gateway %s failed: %s", label, error)
        progress.record(SITE, STEP, FAILED, str(error), port=label)
        return Outcome(SITE, label, FAILED, STEP, str(error), time.monotonic() - started)

    seconds = time.monotonic() - started
    addresses = ", ".join(member.ip_assignments) or "no address yet"
    detail = "authorized through the %s (%s)" % (member.source, addresses)
    progress.record(SITE, STEP, OK, detail, expected, label, seconds)
    return Outcome(SITE, label, OK, STEP, detail, seconds)
