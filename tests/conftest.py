"""Fixtures shared by the test suite: virtual boards, a gateway, the shared recordings."""

import os
from pathlib import Path

import pytest

from baysense import boards
from baysense.gateway.server import GatewayThread
from baysense.registry import Registry
from baysense.vboard.board import VirtualBoard

# The recorded data sets live beside the clone, in ../shared/data; they are never copied here.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip("recorded data not found at %s (CI lays out ../shared beside the clone)" % SHARED_DATA)
    return SHARED_DATA


@pytest.fixture
def make_vboard(tmp_path):
    """Start virtual boards: make_vboard(name="a", board="virtual" or a dict); stopped at teardown."""
    started = []

    def make(name="board", board="virtual", baud=None):
        definition = boards.load(board) if isinstance(board, str) else board
        virtual = VirtualBoard(tmp_path / name, definition, baud=baud).start()
        started.append(virtual)
        return virtual

    yield make
    for virtual in started:
        virtual.stop()


@pytest.fixture
def registry_path(tmp_path, monkeypatch):
    path = tmp_path / "registry.db"
    Registry(path).close()
    monkeypatch.setenv("BAYSENSE_REGISTRY", str(path))
    return path


@pytest.fixture
def gateway_thread(tmp_path, registry_path):
    """A gateway on 127.0.0.1 in a background thread; `.address` is its (host, port)."""
    runner = GatewayThread(tmp_path / "gateway.db", registry_path)
    runner.start()
    runner.db_path = tmp_path / "gateway.db"
    yield runner
    runner.stop()
