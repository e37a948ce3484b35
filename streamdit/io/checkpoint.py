"""safetensors checkpoints: the DiT under Wan 2.1's own key names, plus the text encoder and codec
under `text_encoder.` and `codec.`, with every config stored as JSON in the file's metadata."""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..codecs import Codec, build_codec
from ..network.config import ModelConfig, StreamDefaults
from ..network.text import TextEncoder, build_text_encoder

FORMAT = "streamdit"
FORMAT_VERSION = "1"
_PARTS = ("text_encoder.", "codec.")


@dataclass
class Bundle:
    """What a checkpoint holds: the network, how to encode text and decode latents, and defaults."""

    model: nn.Module
    config: ModelConfig
    text_encoder: TextEncoder | None
    codec: Codec | None
    defaults: StreamDefaults | None
    meta: dict = field(default_factory=dict)
    path: str | None = None


def save_checkpoint(path: str, model: nn.Module, config: ModelConfig, *, text_encoder: TextEncoder | None = None,
                    codec: Codec | None = None, defaults: StreamDefaults | None = None,
                    meta: dict | None = None, dtype: torch.dtype | None = None,
                    parts_dtype: torch.dtype | None = None) -> None:
    """Write one .safetensors file (atomically: a crash never leaves half a file).

    dtype casts the DiT's floating tensors, parts_dtype those of the text encoder and codec (storage only:
    they load back into float32 modules).
    """
    def cast(state: dict, to: torch.dtype | None, prefix: str = "") -> dict:
        return {prefix + k: (v.to(to) if to is not None and v.is_floating_point() else v).detach().cpu().contiguous()
                for k, v in state.items()}

    tensors = cast(model.state_dict(), dtype)
    for prefix, part in (("text_encoder.", text_encoder), ("codec.", codec)):
        if part is not None:
            tensors.update(cast(part.state_dict(), parts_dtype, prefix))
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_config": config.to_json()}
    if text_encoder is not None:
        metadata["text_encoder"] = json.dumps(text_encoder.spec)
    if codec is not None:
        metadata["codec"] = json.dumps(codec.spec)
    if defaults is not None:
        metadata["stream_defaults"] = json.dumps(dataclasses.asdict(defaults))
    metadata["meta"] = json.dumps(meta or {})
    tmp = f"{path}.tmp{os.getpid()}"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)


def read_metadata(path: str) -> dict:
    """The file's metadata dict; clear errors for a missing or corrupt file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist; check the path (or the model folder)")
    try:
        with safe_open(path, framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:
        size = os.path.getsize(path)
        raise ValueError(f"checkpoint {path} ({size} bytes) is not a readable safetensors file: it may be "
                         f"truncated or corrupt ({exc}); download or copy it again") from exc


def read_weights_file(path: str, what: str, where: str = "") -> dict:
    """A .safetensors or weights-only torch file as a dict, with errors that name the file's role (`what`: "TAEHV",
    "LoRA") and where it belongs (`where`, e.g. "models/loras")."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file {path} does not exist; check the path" + (f" ({where})" if where else ""))
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file
            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} ({os.path.getsize(path)} bytes) is not a readable {what} file: it may be truncated "
                         f"or corrupt ({type(exc).__name__}: {exc}); download or copy it again") from exc


def load_checkpoint(path: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Bundle:
    """Load a StreamDiT checkpoint tensor by tensor onto `device` (the DiT in `dtype`, default float32)."""
    from ..network.model import WanDiT  # the model module is heavy to import; keep checkpoint reads cheap

    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "model_config" not in meta:
        raise ValueError(f"checkpoint {path} has no StreamDiT metadata (format={meta.get('format')!r}); "
                         "save it with streamdit.io.checkpoint.save_checkpoint, or load Wan 2.1 files through "
                         "the Wan loader")
    try:
        config = ModelConfig.from_dict(json.loads(meta["model_config"]))
        text_encoder = build_text_encoder(json.loads(meta["text_encoder"])) if "text_encoder" in meta else None
        codec = build_codec(json.loads(meta["codec"])) if "codec" in meta else None
        defaults = StreamDefaults(**json.loads(meta["stream_defaults"])) if "stream_defaults" in meta else None
        extra = json.loads(meta.get("meta", "{}"))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"checkpoint {path} has unusable metadata: {exc}") from exc
    with torch.device("meta"):
        model = WanDiT(config)
    parts = {"": model, "text_encoder.": text_encoder, "codec.": codec}
    _check_shapes(path, parts)
    for prefix, module in parts.items():
        if module is not None:
            module.to_empty(device=device)
            _load_into(path, module, prefix, dtype if prefix == "" else None)  # text encoder, codec stay fp32
    model.eval()
    return Bundle(model, config, text_encoder, codec, defaults, extra, path)


def _expected(parts: dict) -> dict[str, tuple]:
    out = {}
    for prefix, module in parts.items():
        if module is not None:
            out.update({prefix + k: tuple(v.shape) for k, v in module.state_dict().items()})
    return out


def _check_shapes(path: str, parts: dict) -> None:
    expected = _expected(parts)
    with safe_open(path, framework="pt") as f:
        found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{k}: file {found[k]}, config {expected[k]}" for k in sorted(set(found) & set(expected))
             if found[k] != expected[k]]
    if missing or unexpected or wrong:
        lines = []
        if wrong:
            lines.append(f"{len(wrong)} tensor(s) have shapes that do not match the config stored in the file: "
                         + "; ".join(wrong[:8]) + (" ..." if len(wrong) > 8 else ""))
        if missing:
            lines.append(f"{len(missing)} missing: " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
        if unexpected:
            lines.append(f"{len(unexpected)} unexpected: " + ", ".join(unexpected[:8])
                         + (" ..." if len(unexpected) > 8 else ""))
        raise ValueError(f"checkpoint {path} does not match its own config: " + " | ".join(lines)
                         + ". The file was edited or saved with a wrong config; re-save it from the model")


def _load_into(path: str, module: nn.Module, prefix: str, dtype: torch.dtype | None) -> None:
    if dtype is not None:
        module.to(dtype)
    with torch.no_grad(), safe_open(path, framework="pt", device="cpu") as f:
        for name, target in module.state_dict().items():  # one tensor at a time: no second copy of the model
            target.copy_(f.get_tensor(prefix + name))
