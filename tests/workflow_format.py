"""ComfyUI workflow formats: turn a UI-format workflow (what the editor saves and users drag in) into the
API format that POST /prompt takes, the way the frontend's graphToPrompt does for plain graphs.

Used by the tests that keep workflows/*.json and their twins in workflows/api/ in sync; run it as
`python tests/workflow_format.py` to rewrite the twins after editing a UI file.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIRTUAL = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}  # frontend-only nodes, absent from API prompts
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
MUTED, BYPASSED = 2, 4


def widget_names(input_types: dict) -> list[str | None]:
    """Names of the values in a node's widgets_values, in order; None marks a seed's control_after_generate."""
    names: list[str | None] = []
    for section in ("required", "optional"):
        for name, spec in (input_types.get(section) or {}).items():
            kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
            if not (isinstance(kind, list) or kind in WIDGET_TYPES) or opts.get("forceInput"):
                continue
            names.append(name)
            if kind == "INT" and (opts.get("control_after_generate") or name in ("seed", "noise_seed")):
                names.append(None)
    return names


def ui_to_api(ui: dict, input_types_of: Callable[[str], dict]) -> dict:
    """API prompt {id: {"class_type", "inputs"}} of a UI workflow without groups of nodes or subgraphs."""
    links = {link[0]: link for link in ui.get("links", [])}
    prompt = {}
    for node in ui["nodes"]:
        if node["type"] in VIRTUAL or node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
        inputs = {}
        for name, value in zip(widget_names(input_types_of(node["type"])), node.get("widgets_values") or []):
            if name is not None and name not in linked:
                inputs[name] = value
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                _, origin, origin_slot, *_ = links[slot["link"]]
                inputs[slot["name"]] = [str(origin), origin_slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def pack_input_types() -> Callable[[str], dict]:
    """INPUT_TYPES of this pack's nodes, imported the way ComfyUI imports the pack."""
    import importlib.util

    name = "ComfyUI_StreamDiT_pack"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    mappings = sys.modules[name].NODE_CLASS_MAPPINGS

    def input_types_of(class_type: str) -> dict:
        if class_type not in mappings:
            raise KeyError(f"workflow uses node {class_type!r}, which is not a node of this pack")
        return mappings[class_type].INPUT_TYPES()

    return input_types_of


def workflow_pairs() -> list[tuple[Path, Path]]:
    """(UI file, API twin) for every bundled workflow."""
    ui_files = sorted((ROOT / "workflows").glob("*.json"))
    return [(ui, ROOT / "workflows" / "api" / ui.name) for ui in ui_files]


if __name__ == "__main__":
    types = pack_input_types()
    for ui_path, api_path in workflow_pairs():
        api = ui_to_api(json.loads(ui_path.read_text()), types)
        api_path.parent.mkdir(parents=True, exist_ok=True)
        api_path.write_text(json.dumps(api, indent=2) + "\n")
        print(f"wrote {api_path.relative_to(ROOT)}")
