"""The pack's registry entry as ComfyUI v0.3.64's own pyproject parser (comfy_config) reads it."""
from __future__ import annotations

import json
import subprocess

import pytest
from comfyhost import IN_CI, PACK_NAME, ROOT, HostUnavailable, newest_archive_missing, newest_comfyui


def test_the_hosts_parser_reads_our_registry_entry():
    if newest_archive_missing():
        if IN_CI:
            pytest.fail(f"the newest host is required in CI: {newest_archive_missing()}", pytrace=False)
        pytest.skip(f"the newest host is not here: {newest_archive_missing()}")
    try:
        source, python = newest_comfyui()
    except HostUnavailable as exc:
        pytest.fail(str(exc))
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]);"
            "from comfy_config.config_parser import extract_node_configuration as read;"
            "c = read(sys.argv[2]); print(json.dumps({'name': c.project.name, 'requires': "
            "c.project.supported_comfyui_version, 'publisher': c.tool_comfy.publisher_id, "
            "'display': c.tool_comfy.display_name, 'icon': c.tool_comfy.icon}))")
    out = subprocess.run([str(python), "-c", code, str(source), str(ROOT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    entry = json.loads(out.stdout.strip().splitlines()[-1])
    assert entry["name"] == PACK_NAME  # the folder the registry installs into is the one the host tests use
    assert entry["publisher"] == "streamdit" and entry["display"] and entry["requires"].startswith(">=")
    assert entry["icon"].endswith("/docs/img/icon.png") and (ROOT / "docs" / "img" / "icon.png").is_file()
