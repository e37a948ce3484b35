"""Every bundled workflow's API twin checked against the node definitions the live host serves (/object_info),
not only the pack's INPUT_TYPES read in-process (tests/test_nodes.py): inputs, links, values and widget order.
Workflows that name real weights (Wan 2.1, Self-Forcing) cannot run here, but they must still validate."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: workflow_format

from workflow_format import CORE_NODES, FILE_INPUTS, ROOT, graph_problems, ui_to_api, workflow_pairs  # noqa: E402


@pytest.fixture(scope="module")
def object_info(host) -> dict:
    return host.get("/object_info", timeout=60)


def live_definitions(info: dict):
    """(input types, output types) by class name from /object_info. Core nodes the bundled workflows use come from
    CORE_NODES, as current ComfyUI declares them: the March-2024 host's CLIPLoader predates type 'wan'."""
    def input_types_of(kind: str) -> dict:
        if kind in CORE_NODES:
            return CORE_NODES[kind][0]
        assert kind in info, f"the host serves no node {kind!r}"
        return info[kind]["input"]

    def output_types_of(kind: str) -> tuple:
        return CORE_NODES[kind][1] if kind in CORE_NODES else tuple(info[kind]["output"])

    return input_types_of, output_types_of


@pytest.mark.parametrize("ui_path,api_path", workflow_pairs(), ids=lambda p: p.name)
def test_bundled_workflow_twin_validates_against_the_live_hosts_object_info(object_info, ui_path, api_path):
    inputs_of, outputs_of = live_definitions(object_info)
    prompt = json.loads(api_path.read_text())
    assert graph_problems(prompt, inputs_of, outputs_of) == []
    # the widget values of the UI file map onto the host's inputs in the host's order: the same twin
    assert ui_to_api(json.loads(ui_path.read_text()), inputs_of) == prompt
    for node in prompt.values():
        if node["class_type"] in CORE_NODES and node["class_type"] in object_info:  # at least its input names
            live = object_info[node["class_type"]]["input"]
            assert set(live["required"]) <= set(node["inputs"]), node


# -- Wan in core: the newest host's own CLIPLoader (type 'wan') ------------------------------------------------------
WAN_IN_CORE = "the March-2024 host predates Wan in core: its CLIPLoader has no type 'wan'"


@pytest.mark.newest_host(WAN_IN_CORE)
def test_core_node_stand_ins_are_what_the_newest_host_serves(object_info):
    """CORE_NODES (used where the host predates a core node's current form) declares what v0.3.64 serves."""
    for kind, (input_types, output_types) in CORE_NODES.items():
        live = object_info[kind]
        assert tuple(live["output"]) == output_types
        for section in ("required", "optional"):
            assert set(live["input"].get(section, {})) == set(input_types.get(section, {})), (kind, section)
            for name, spec in input_types.get(section, {}).items():
                if spec[0]:  # file lists are left empty in CORE_NODES
                    assert live["input"][section][name][0] == spec[0], (kind, name)
    assert "wan" in object_info["CLIPLoader"]["input"]["required"]["type"][0]


@pytest.mark.newest_host(WAN_IN_CORE)
@pytest.mark.parametrize("ui_path,api_path", workflow_pairs(), ids=lambda p: p.name)
def test_bundled_workflow_twin_validates_against_the_newest_hosts_own_nodes(object_info, ui_path, api_path):
    """No stand-ins: every node, core ones included, as /object_info of the newest host declares it."""
    def inputs_of(kind: str) -> dict:
        assert kind in object_info, f"the host serves no node {kind!r}"
        return object_info[kind]["input"]

    prompt = json.loads(api_path.read_text())
    assert graph_problems(prompt, inputs_of, lambda kind: tuple(object_info[kind]["output"])) == []
    assert ui_to_api(json.loads(ui_path.read_text()), inputs_of) == prompt


@pytest.mark.newest_host(WAN_IN_CORE)
@pytest.mark.parametrize("name", ["wan2.1_1.3b_stream", "realtime_causal_stream", "wan2.1_video_to_video"])
def test_wan_workflows_pass_the_hosts_own_validation_but_for_their_weights_files(host, name):
    """Queued as bundled, the host's own validation refuses only the weights files this machine lacks: the pack's
    loader names them, and the core CLIPLoader's type 'wan' is accepted."""
    prompt = json.loads((ROOT / "workflows" / "api" / f"{name}.json").read_text())
    status, reply = host.post("/prompt", {"prompt": prompt})
    assert status == 400, reply
    errors = reply["node_errors"]
    assert errors, reply
    for nid, entry in errors.items():
        for err in entry["errors"]:
            kind, field = prompt[nid]["class_type"], (err.get("extra_info") or {}).get("input_name")
            assert (kind, field) in FILE_INPUTS, (nid, kind, err)
    (clip,) = [nid for nid, node in prompt.items() if node["class_type"] == "CLIPLoader"]
    assert prompt[clip]["inputs"]["type"] == "wan"
    # the host did validate the CLIPLoader: it refused the absent umT5 file, and only that
    assert [e["extra_info"]["input_name"] for e in errors[clip]["errors"]] == ["clip_name"]
