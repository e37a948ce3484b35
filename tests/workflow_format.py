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
# Core nodes the bundled workflows use, as current ComfyUI declares them (nodes.py CLIPLoader, with "wan" among
# its types since Wan 2.1 support; the tests' March-2024 host predates it). File lists are left empty: any
# weights file name passes.
CORE_NODES = {
    "CLIPLoader": ({"required": {"clip_name": ([], {}),
                                 "type": (["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv",
                                           "pixart", "cosmos", "lumina2", "wan", "hidream", "chroma", "ace",
                                           "omnigen2", "qwen_image", "hunyuan_image"], {})},
                    "optional": {"device": (["default", "cpu"], {"advanced": True})}}, ("CLIP",)),
    # nodes.py UNETLoader, LoraLoaderModelOnly, VAELoader of v0.3.64
    "UNETLoader": ({"required": {"unet_name": ([], {}),
                                 "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"], {})}},
                   ("MODEL",)),
    "LoraLoaderModelOnly": ({"required": {"model": ("MODEL", {}), "lora_name": ([], {}),
                                          "strength_model": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0,
                                                                       "step": 0.01})}}, ("MODEL",)),
    "VAELoader": ({"required": {"vae_name": ([], {})}}, ("VAE",)),
}
FILE_INPUTS = {("StreamDiTModelLoader", "model"), ("StreamDiTModelLoader", "decoder"), ("CLIPLoader", "clip_name"),
               ("UNETLoader", "unet_name"), ("LoraLoaderModelOnly", "lora_name"), ("VAELoader", "vae_name")}
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
        if class_type in CORE_NODES:
            return CORE_NODES[class_type][0]
        if class_type not in mappings:
            raise KeyError(f"workflow uses node {class_type!r}, which is neither a node of this pack nor a core node "
                           "listed in CORE_NODES")
        return mappings[class_type].INPUT_TYPES()

    return input_types_of


def return_types_of(class_type: str) -> tuple:
    if class_type in CORE_NODES:
        return CORE_NODES[class_type][1]
    pack_input_types()
    return sys.modules["ComfyUI_StreamDiT_pack"].NODE_CLASS_MAPPINGS[class_type].RETURN_TYPES


def graph_problems(prompt: dict, input_types_of: Callable[[str], dict],
                   output_types_of: Callable[[str], tuple] | None = None) -> list[str]:
    """What ComfyUI's validation would reject in an API prompt, checked against the node definitions: missing
    inputs, links to missing nodes or of the wrong type, values outside a combo's choices or a number's range.
    Combos that list files (models, decoders, text encoders) only need a weights file name. output_types_of:
    a node's RETURN_TYPES (default: this pack's and CORE_NODES'; a live host's /object_info can supply them)."""
    output_types_of = output_types_of or return_types_of
    problems = []
    for nid, node in prompt.items():
        kind, inputs = node["class_type"], node["inputs"]
        types = input_types_of(kind)
        declared = {**types.get("required", {}), **types.get("optional", {})}
        for name in types.get("required", {}):
            if name not in inputs:
                problems.append(f"node {nid} ({kind}): required input {name!r} is missing")
        for name, value in inputs.items():
            if name not in declared:
                problems.append(f"node {nid} ({kind}): unknown input {name!r}")
                continue
            kind_of, opts = declared[name][0], (declared[name][1] if len(declared[name]) > 1 else {})
            if isinstance(value, list):  # a link [origin id, slot]
                origin = prompt.get(str(value[0]))
                if origin is None:
                    problems.append(f"node {nid} ({kind}).{name}: links to missing node {value[0]}")
                    continue
                produced = output_types_of(origin["class_type"])[value[1]]
                if produced != kind_of:
                    problems.append(f"node {nid} ({kind}).{name}: takes {kind_of}, linked to a {produced}")
            elif (kind, name) in FILE_INPUTS:
                if not (isinstance(value, str) and (value.endswith((".safetensors", ".pth", ".pt"))
                                                    or value in (kind_of or []))):
                    problems.append(f"node {nid} ({kind}).{name}: {value!r} is not a weights file name")
            elif isinstance(kind_of, list):
                if value not in kind_of:
                    problems.append(f"node {nid} ({kind}).{name}: {value!r} is not one of {kind_of}")
            elif kind_of in ("INT", "FLOAT"):
                if not isinstance(value, (int, float)) or not opts.get("min", value) <= value <= opts.get("max", value):
                    problems.append(f"node {nid} ({kind}).{name}: {value!r} is outside [{opts.get('min')}, "
                                    f"{opts.get('max')}]")
            elif kind_of in ("STRING", "BOOLEAN") and not isinstance(value, str if kind_of == "STRING" else bool):
                problems.append(f"node {nid} ({kind}).{name}: {value!r} is not a {kind_of}")
    return problems


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
