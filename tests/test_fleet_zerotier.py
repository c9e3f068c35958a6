"""The site's ZeroTier step in `fleet provision`: manifest hints, the summary and the description.

Every run here uses loopback fakes of the ZeroTier APIs and bays whose ports do not exist, so
no board is touched and each test takes well under a second.
"""

import logging
import os

import pytest

from baysense.cli import main
from baysense.fleet import manifest as manifest_module
from baysense.fleet.progress import SITE, Progress
from baysense.fleet.site import authorize_gateway
from baysense.registry import Registry
from baysense.zerotier.fake import FakeCentral, FakeZeroTierOne

TOKEN = "fleetTESTtoken0000000001"
CONTROLLER_NETWORK = "1a2b3c4d5e000042"  # starts with the fake controller's node id
CENTRAL_NETWORK = "8056c2e21c000042"
GATEWAY_MEMBER = "0badc0ffee"
MISSING_PORTS = ("/dev/baysense-no-such-port-1", "/dev/baysense-no-such-port-2", "/dev/baysense-no-such-port-3")


@pytest.fixture(autouse=True)
def no_token_environment(monkeypatch):
    for name in ("BAYSENSE_ZT_TOKEN_FILE", "BAYSENSE_ZT_CENTRAL_TOKEN_FILE", "ZEROTIER_CENTRAL_TOKEN", "BAYSENSE_ZT_SERVICE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def registry_path(tmp_path):
    path = tmp_path / "registry.db"
    Registry(path).close()
    return path


def write_token(tmp_path, token=TOKEN):
    path = tmp_path / "zt.token"
    path.write_text(token)
    os.chmod(path, 0o600)
    return path


def write_manifest(tmp_path, zerotier, ports=MISSING_PORTS):
    bays = "".join('[[bays]]\nid = "b%d"\nport = "%s"\n\n' % (index + 1, port) for index, port in enumerate(ports))
    text = 'community = "lot-7"\ngateway = "127.0.0.1:5683"\nboard = "virtual"\n\n[zerotier]\n%s\n\n%s' % (zerotier, bays)
    path = tmp_path / "site.toml"
    path.write_text(text)
    return manifest_module.load(path)


def zerotier_table(network, api, url, token_file=True):
    table = 'network = "%s"\nmember = "%s"\napi = "%s"\nurl = "%s"\n' % (network, GATEWAY_MEMBER, api, url)
    return table + ('token_file = "zt.token"\n' if token_file else "")


def authorize(manifest, registry_path):
    with Registry(registry_path) as registry:
        return authorize_gateway(manifest, Progress(registry, manifest.community))


def test_controller_sends_no_description(tmp_path, registry_path, caplog):
    write_token(tmp_path)
    with FakeZeroTierOne(TOKEN) as controller:
        controller.host_network(CONTROLLER_NETWORK)
        manifest = write_manifest(tmp_path, zerotier_table(CONTROLLER_NETWORK, "controller", controller.url))

        with caplog.at_level(logging.WARNING):
            outcome = authorize(manifest, registry_path)

        assert outcome.result == "ok", outcome.detail
        post = [request for request in controller.requests if request.method == "POST"][0]
        assert "description" not in post.body
        assert post.body["name"] == "baysense gateway lot-7"
        assert controller.controller_member(CONTROLLER_NETWORK, GATEWAY_MEMBER)["authorized"] is True
        assert "does not store" not in caplog.text


def test_central_still_gets_description(tmp_path, registry_path):
    write_token(tmp_path)
    with FakeCentral(TOKEN) as central:
        central.add_network(CENTRAL_NETWORK)
        manifest = write_manifest(tmp_path, zerotier_table(CENTRAL_NETWORK, "central", central.url))

        outcome = authorize(manifest, registry_path)

        assert outcome.result == "ok", outcome.detail
        assert central.member(CENTRAL_NETWORK, GATEWAY_MEMBER)["description"] == "Baysense gateway of lot-7, UDP 127.0.0.1:5683"


def test_wrong_controller_token_names_manifest_key(tmp_path, registry_path):
    write_token(tmp_path, "wrongTOKEN000000000000001")
    with FakeZeroTierOne(TOKEN) as controller:
        controller.host_network(CONTROLLER_NETWORK)
        manifest = write_manifest(tmp_path, zerotier_table(CONTROLLER_NETWORK, "controller", controller.url))

        outcome = authorize(manifest, registry_path)

    assert outcome.result == "failed"
    assert "set token_file in the manifest's [zerotier] table" in outcome.detail
    assert "authtoken.secret" in outcome.detail
    assert "--token-file" not in outcome.detail


def test_missing_central_token_names_manifest_key(tmp_path, registry_path):
    with FakeCentral(TOKEN) as central:
        central.add_network(CENTRAL_NETWORK)
        manifest = write_manifest(tmp_path, zerotier_table(CENTRAL_NETWORK, "central", central.url, token_file=False))

        outcome = authorize(manifest, registry_path)

        assert central.requests == []
    assert outcome.result == "failed"
    assert outcome.detail.startswith("ZeroTier Central token not set: ")
    assert "set token_file in the manifest's [zerotier] table" in outcome.detail
    assert "--central-token-file" not in outcome.detail


def test_central_network_on_controller_names_api_key(tmp_path, registry_path):
    # A network id of my.zerotier.com given with api = "controller".
    write_token(tmp_path)
    with FakeZeroTierOne(TOKEN) as controller:
        controller.host_network(CONTROLLER_NETWORK)
        manifest = write_manifest(tmp_path, zerotier_table(CENTRAL_NETWORK, "controller", controller.url))

        outcome = authorize(manifest, registry_path)

    assert outcome.result == "failed"
    assert outcome.detail.startswith("network %s not found" % CENTRAL_NETWORK)
    assert 'set api = "central"' in outcome.detail
    assert "--central" not in outcome.detail


def test_summary_counts_bays_not_site(tmp_path, registry_path, capsys):
    write_token(tmp_path, "wrongTOKEN000000000000001")
    with FakeZeroTierOne(TOKEN) as controller:
        controller.host_network(CONTROLLER_NETWORK)
        manifest = write_manifest(tmp_path, zerotier_table(CONTROLLER_NETWORK, "controller", controller.url))

        status = main(["fleet", "provision", str(manifest.path), "--registry", str(registry_path)])

    output = capsys.readouterr()
    assert status == 1
    assert "baysense: the ZeroTier step (%s) failed and 3 of 3 bays failed (b1, b2, b3)" % SITE in output.err
    assert "of 4 bays" not in output.err
    assert "3 failed; ZeroTier step failed; logs in" in output.out
    # The summary is rich markup, which would drop a bare "[zerotier]".
    assert "set token_file in the manifest's [zerotier] table" in " ".join(output.out.split())
