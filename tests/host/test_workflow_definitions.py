"""Every bundled workflow's API twin checked against the node definitions the live host serves (/object_info),
not only the pack's INPUT_TYPES read in-process (tests/test_nodes.py): inputs, links, values and widget order.
Workflows that name real weights (Wan 2.1, Self-Forcing) cannot run here, but they must still validate."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: workflow_format

from workflow_format import CORE_NODES, graph_problems, ui_to_api, workflow_pairs  # noqa: E402


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
