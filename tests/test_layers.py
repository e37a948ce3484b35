"""The layers stay true: what each part of the engine may import, read from the source (lazy imports included)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENGINE = ROOT / "streamdit"
COMFYUI = ("comfy", "comfy_extras", "folder_paths", "server", "execution", "nodes", "node_helpers", "latent_preview",
           "comfy_api", "comfy_execution")
OUR_MODEL = ("streamdit.train", "streamdit.toyworld", "streamdit.evaluation")  # our toy model's data, training, judge
# package -> packages it must never import
RULES = {
    "streamdit": ("nodes",) + COMFYUI,  # the engine: no ComfyUI, no node glue
    "streamdit.sampling": OUR_MODEL + ("streamdit.pipeline", "streamdit.cli"),
    "streamdit.network": OUR_MODEL + ("streamdit.sampling", "streamdit.pipeline", "streamdit.io", "streamdit.cli"),
    "streamdit.codecs": OUR_MODEL + ("streamdit.sampling", "streamdit.pipeline", "streamdit.cli"),
    "streamdit.pipeline": OUR_MODEL + ("streamdit.cli",),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of every module this file imports, at any depth; `if TYPE_CHECKING:` blocks excepted."""
    tree = ast.parse(path.read_text(), str(path))
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package[:len(package) - child.level + 1]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module
                found.add(mod)
                found.update(f"{mod}.{a.name}" for a in child.names)  # `from pkg import module`
            visit(child)

    visit(tree)
    return found


def engine_files():
    return sorted(p for p in ENGINE.rglob("*.py"))


def violations(path: Path) -> list[str]:
    name = module_name(path)
    out = []
    for package, banned in RULES.items():
        if name != package and not name.startswith(package + "."):
            continue
        for imported in imports(path):
            for b in banned:
                if imported == b or imported.startswith(b + "."):
                    out.append(f"{name} imports {imported} (layer {package} must not import {b})")
    return out


@pytest.mark.parametrize("path", engine_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_engine_modules_import_only_their_layers(path):
    assert not violations(path)


def test_the_import_check_finds_what_it_must():
    """Negative test: forbidden imports, lazy ones and relative ones, are caught; TYPE_CHECKING ones are not."""
    fake = ENGINE / "sampling" / "_layer_probe.py"
    fake.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..train import trainer\n"
                    "def f():\n    from ..toyworld import VOCABULARY\n    import folder_paths\n")
    try:
        found = violations(fake)
    finally:
        fake.unlink()
    assert any("streamdit.toyworld" in v for v in found) and any("folder_paths" in v for v in found)
    assert not any("streamdit.train" in v for v in found)


def test_the_engine_imports_without_comfyui_or_the_toy_world():
    import subprocess
    import sys
    code = ("import sys; import streamdit, streamdit.pipeline, streamdit.cli; "
            f"bad = [m for m in sys.modules if m.split('.')[0] in {COMFYUI!r} or m.startswith(('streamdit.toyworld', "
            "'streamdit.train', 'streamdit.evaluation'))]; print(bad); assert not bad")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_toy_vocabulary_is_the_toy_worlds():
    from streamdit.network.text import toy_vocabulary
    from streamdit.pipeline import Pipeline, default_model_path
    from streamdit.toyworld import VOCABULARY

    assert toy_vocabulary() == list(VOCABULARY) and len(VOCABULARY) == 78
    random_toy = Pipeline.load("random:toy").bundle.text_encoder
    assert list(random_toy.vocab) == list(VOCABULARY)  # a random toy model reads every caption word
    random_toy.encode(["a duck bouncing by the sea"])  # a word the old 17-word fallback did not know
    if default_model_path() is not None:
        assert list(Pipeline.load().bundle.text_encoder.vocab) == list(VOCABULARY)
