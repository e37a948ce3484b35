"""Load Wan 2.1 text-to-video DiT checkpoints, in any of their published layouts, into WanDiT.

Layouts: original names (one .safetensors), ComfyUI (`model.diffusion_model.` prefix, fp16/bf16/fp8 and
"fp8 scaled"), diffusers (`WanTransformer3DModel` names, sharded with an index), and torch files (.pth/.pt,
including Self-Forcing/CausVid dicts such as {"generator": {"model.<key>": ...}}). The model is built on the
meta device and filled tensor by tensor, so loading never holds a second copy of the weights.
"""
from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
from collections.abc import Mapping, Sequence

import torch
from safetensors import safe_open
from torch import Tensor, nn

from ..network.config import ModelConfig
from . import names

WAN_HEAD_DIM = 128  # every released Wan 2.1 / 2.2 DiT
DEFAULT_TEXT_LEN = 512  # T5 tokens Wan pads the prompt to; not stored in the weights
_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
# Where trainers keep the DiT in a .pt dict; EMA first, as Self-Forcing's README runs inference with its EMA.
_STATE_KEYS = ("generator_ema", "generator", "state_dict", "model", "module", "net", "ema")
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64,
                       "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
_FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)


def _corrupt(path: str, exc: Exception, what: str = "safetensors") -> ValueError:
    size = os.path.getsize(path) if os.path.exists(path) else 0
    return ValueError(f"{path} ({size} bytes) is incomplete or corrupt: not a readable {what} file ({exc}); "
                      "download or copy it again")


class _SafetensorsFile:
    """One .safetensors file, opened once; tensors are read on demand."""

    def __init__(self, path: str, stack: contextlib.ExitStack):
        self.path = path
        try:
            self._f = stack.enter_context(safe_open(path, framework="pt", device="cpu"))
            self._keys = list(self._f.keys())
            slices = {k: self._f.get_slice(k) for k in self._keys}
            self._shapes = {k: tuple(s.get_shape()) for k, s in slices.items()}
            self._dtypes = {k: _SAFETENSORS_DTYPES.get(s.get_dtype()) for k, s in slices.items()}
        except Exception as exc:  # safetensors raises its own SafetensorError for truncated headers/data
            raise _corrupt(path, exc) from exc

    def keys(self) -> list[str]:
        return self._keys

    def shape(self, key: str) -> tuple[int, ...]:
        return self._shapes[key]

    def dtype(self, key: str) -> torch.dtype | None:
        return self._dtypes[key]

    def get(self, key: str) -> Tensor:
        try:
            return self._f.get_tensor(key)
        except Exception as exc:
            raise _corrupt(self.path, exc) from exc


class _TensorDict:
    """A state dict from torch.load(mmap=True): tensors stay file-backed until read."""

    def __init__(self, path: str, tensors: Mapping[str, Tensor]):
        self.path, self._tensors = path, tensors

    def keys(self) -> list[str]:
        return list(self._tensors)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensors[key].shape)

    def dtype(self, key: str) -> torch.dtype:
        return self._tensors[key].dtype

    def get(self, key: str) -> Tensor:
        return self._tensors[key]


def _is_state(obj) -> bool:
    return isinstance(obj, Mapping) and any(isinstance(k, str) and k.endswith(names.ANCHOR) for k in obj)


def _unwrap(obj, path: str, state_key: str | None) -> tuple[Mapping[str, Tensor], str | None]:
    """The DiT state dict inside a torch checkpoint, and the dict key it was found under."""
    if state_key is not None:
        if not isinstance(obj, Mapping) or state_key not in obj:
            found = sorted(map(str, obj))[:10] if isinstance(obj, Mapping) else type(obj).__name__
            raise ValueError(f"{path} has no entry {state_key!r} (it has {found}); pass another state_key")
        obj = obj[state_key]
        if not _is_state(obj):
            raise ValueError(f"{path}[{state_key!r}] is not a Wan DiT state dict (no '{names.ANCHOR}')")
    elif not _is_state(obj):
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict; save model.state_dict()")
        candidates = [k for k in _STATE_KEYS if _is_state(obj.get(k))]
        candidates += [k for k, v in obj.items() if k not in candidates and _is_state(v)]
        if not candidates:
            keys = [k for k in obj if isinstance(k, str)]
            raise ValueError(f"{path} has no Wan DiT state dict (top-level entries: {keys[:10]}). "
                             + names.what_it_looks_like(keys))
        state_key, obj = candidates[0], obj[candidates[0]]
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}, state_key


def _load_torch(path: str, state_key: str | None) -> tuple[_TensorDict, str | None]:
    try:
        # weights_only: a checkpoint must not run code; mmap: tensors are paged in as they are read.
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise ValueError(f"{path} could not be read as a weights-only torch checkpoint: it is incomplete or "
                         f"corrupt, an old non-zip torch file, or holds more than tensors ({exc}); download it "
                         "again or convert it to .safetensors") from exc
    tensors, key = _unwrap(obj, path, state_key)
    return _TensorDict(path, tensors), key


def _index_for_shard(path: str) -> str | None:
    """The index file next to a shard that lists it, if any."""
    for index in sorted(glob.glob(os.path.join(os.path.dirname(path), "*.safetensors.index.json"))):
        if os.path.basename(path) in _weight_map(index).values():
            return index
    return None


def _weight_map(index: str) -> dict[str, str]:
    try:
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f)["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
        return weight_map
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"index {index} is incomplete or corrupt: expected JSON with a 'weight_map' "
                         f"of tensor name -> shard file ({exc})") from exc


def _resolve(path: str) -> tuple[str, str]:
    """(kind, file) for a path: kind is 'index', 'safetensors' or 'torch'; folders are searched."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Wan checkpoint {path} does not exist; check the path")
    if os.path.isdir(path):
        found = {ext: sorted(glob.glob(os.path.join(path, "*" + ext)))
                 for ext in (".safetensors.index.json", ".safetensors", *_TORCH_SUFFIXES)}
        if not any(found.values()) and os.path.isdir(os.path.join(path, "transformer")):
            return _resolve(os.path.join(path, "transformer"))  # a diffusers pipeline folder
        for ext, files in found.items():
            if len(files) == 1:
                return _resolve(files[0])
            if len(files) > 1:
                raise ValueError(f"folder {path} holds several {ext} files ({', '.join(map(os.path.basename, files))})"
                                 " and no single index; pass the file (or the index .json) to load")
        raise ValueError(f"folder {path} holds no .safetensors, index .json or .pt/.pth weights")
    if path.endswith(".index.json"):
        return "index", path
    if path.endswith(".gguf"):
        raise ValueError(f"{path} is GGUF-quantized, which this loader does not read; use a .safetensors "
                         "(fp32/bf16/fp16/fp8) or .pth file")
    if path.endswith(_TORCH_SUFFIXES):
        return "torch", path
    if re.search(r"-\d+-of-\d+\.safetensors$", path):
        index = _index_for_shard(path)
        if index is not None:  # one shard of many: load them all
            return "index", index
    return "safetensors", path


def _diffusers_heads(folder: str) -> int | None:
    """num_attention_heads from a diffusers config.json next to the weights."""
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            heads = json.load(f).get("num_attention_heads")
        return heads if isinstance(heads, int) and heads > 0 else None
    except (OSError, ValueError, AttributeError):
        return None


class WanState:
    """A Wan DiT checkpoint seen under Wan 2.1's original key names: shapes and dtypes up front, tensors on
    demand. Use as a context manager (it keeps the files open); see read_wan_state."""

    def __init__(self, path: str, state_key: str | None = None):
        self.path = path
        self._stack = contextlib.ExitStack()
        try:
            self._open(state_key)
        except BaseException:
            self._stack.close()
            raise

    def _open(self, state_key: str | None) -> None:
        kind, file = _resolve(self.path)
        self.state_key = None
        if kind != "torch" and state_key is not None:
            raise ValueError(f"state_key={state_key!r} only applies to .pt/.pth files, not {file}")
        if kind == "index":
            weight_map = _weight_map(file)
            folder = os.path.dirname(file)
            shards = sorted(set(weight_map.values()))
            for shard in shards:
                if not os.path.isfile(os.path.join(folder, shard)):
                    raise FileNotFoundError(f"shard {shard} listed in {file} is missing from {folder}; the "
                                            "download is incomplete: fetch every shard")
            readers = [_SafetensorsFile(os.path.join(folder, s), self._stack) for s in shards]
            self.format = "sharded safetensors"
        elif kind == "torch":
            reader, self.state_key = _load_torch(file, state_key)
            readers, self.format = [reader], "torch"
        else:
            readers, self.format = [_SafetensorsFile(file, self._stack)], "safetensors"
        self.files = [r.path for r in readers]
        self._readers = readers

        raw: dict[str, int] = {}  # raw key -> reader index
        for i, reader in enumerate(readers):
            for key in reader.keys():
                if key in raw:
                    raise ValueError(f"tensor {key!r} is stored twice, in {readers[raw[key]].path} and "
                                     f"{reader.path}; the shards overlap: download the checkpoint again")
                raw[key] = i
        if kind == "index":
            absent = [k for k, s in weight_map.items() if k not in raw]
            if absent:
                raise ValueError(f"{file} lists {len(absent)} tensor(s) its shards do not hold (e.g. {absent[0]!r} "
                                 f"in {weight_map[absent[0]]}); the shards are incomplete or corrupt")

        self.prefix = names.find_prefix(list(raw), self.path)
        self.quantization = "fp8-scaled" if any(k.endswith(names.SCALED_FP8_MARKER) for k in raw) else None
        self.ignored: list[str] = []
        tensors: dict[str, tuple[int, str]] = {}  # name -> (reader, raw key)
        scales: dict[str, tuple[int, str]] = {}
        for key, i in raw.items():
            name = names.normalise(key, self.prefix)
            if name is None or names.is_ignored(name):
                self.ignored.append(key)
            elif name.endswith(names.SCALE_SUFFIX):
                scales[name[: -len(names.SCALE_SUFFIX)] + ".weight"] = (i, key)  # <linear>.scale_weight
            else:
                self._put(tensors, name, (i, key))
        self.layout = "diffusers" if names.is_diffusers(tensors) else "original"
        if self.layout == "diffusers":
            mapped: dict[str, tuple[int, str]] = {}
            for name, loc in tensors.items():
                self._put(mapped, names.from_diffusers(name), loc)
            tensors, scales = mapped, {names.from_diffusers(k): v for k, v in scales.items()}
        names.refuse_variants(list(tensors), self.path)
        if scales:
            self.quantization = "fp8-scaled"
        self._tensors, self._scales = tensors, scales
        self.shapes = {n: readers[i].shape(k) for n, (i, k) in tensors.items()}
        self.dtypes = {n: readers[i].dtype(k) for n, (i, k) in tensors.items()}
        if self.quantization is None and any(d in _FP8 for d in self.dtypes.values()):
            self.quantization = "fp8"
        self.num_heads_hint = _diffusers_heads(os.path.dirname(file)) if self.layout == "diffusers" else None

    def _put(self, tensors: dict, name: str, loc: tuple[int, str]) -> None:
        if name in tensors:
            raise ValueError(f"{self.path} holds {name!r} twice (as {tensors[name][1]!r} and {loc[1]!r}); it mixes "
                             "two layouts or two models: re-export a single model")
        tensors[name] = loc

    def __enter__(self) -> WanState:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()
        self._readers = []

    @property
    def file_dtype(self) -> torch.dtype:
        """The dtype of the bulk of the weights (the first FFN), as stored."""
        return self.dtypes.get("blocks.0.ffn.0.weight") or next(iter(self.dtypes.values()))

    def tensor(self, name: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> Tensor:
        """One tensor under its original name, dequantized (fp8) and cast to `dtype` on `device`."""
        i, key = self._tensors[name]
        t = self._readers[i].get(key)
        if name in self._scales or t.dtype in _FP8:
            t = t.to(device).float()  # move the 1-byte form, widen on the target device
            if name in self._scales:
                j, skey = self._scales[name]
                scale = self._readers[j].get(skey).to(device).float()
                if scale.numel() > 1 and scale.ndim == 1:  # per output channel
                    scale = scale.view(-1, *[1] * (t.ndim - 1))
                t = t.mul_(scale)
            return t.to(dtype or torch.bfloat16)
        return t.to(device=device, dtype=dtype or t.dtype)


def read_wan_state(path: str, state_key: str | None = None) -> WanState:
    """Open a Wan DiT checkpoint (file, shard, index .json or folder) without reading its tensors.

    state_key picks the entry of a torch checkpoint dict (default: the first of generator_ema, generator,
    state_dict, model, ... that holds DiT weights). Raises ValueError for unreadable files, files that are no
    DiT, and DiT variants this loader does not support.
    """
    return WanState(path, state_key)


def infer_wan_config(shapes: Mapping[str, Sequence[int]], *, num_heads: int | None = None,
                     text_len: int = DEFAULT_TEXT_LEN, path: str = "checkpoint") -> ModelConfig:
    """ModelConfig from tensor shapes under Wan 2.1's original names.

    The head count is not in the weights: Wan uses head_dim 128, so it is dim // 128 unless num_heads is given.
    """
    needed = ["patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight", "head.modulation",
              "head.head.weight", "blocks.0.ffn.0.weight"]
    missing = [k for k in needed if k not in shapes]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}, needed to tell the model's size; "
                         "it is incomplete or not a Wan 2.1 DiT")
    dim = shapes["head.modulation"][-1]
    patch = tuple(shapes["patch_embedding.weight"][2:])
    head_rows = shapes["head.head.weight"][0]
    if len(patch) != 3 or head_rows % math.prod(patch):
        raise ValueError(f"{path}: patch_embedding.weight {tuple(shapes['patch_embedding.weight'])} and "
                         f"head.head.weight rows {head_rows} do not fit a 3D patch; not a Wan 2.1 DiT")
    layers = {int(m[1]) for k in shapes if (m := re.match(r"blocks\.(\d+)\.", k))}
    if num_heads is None:
        if dim % WAN_HEAD_DIM:
            raise ValueError(f"{path}: cannot tell the number of attention heads: dim={dim} is not a multiple of "
                             f"Wan's head_dim {WAN_HEAD_DIM}; pass num_heads explicitly")
        num_heads = dim // WAN_HEAD_DIM
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"{path}: num_heads={num_heads} does not divide dim={dim}")
    return ModelConfig(
        dim=dim, ffn_dim=shapes["blocks.0.ffn.0.weight"][0], num_heads=num_heads,
        num_layers=max(layers) + 1,  # a gap in the block numbers then shows up as missing keys
        in_dim=shapes["patch_embedding.weight"][1], out_dim=head_rows // math.prod(patch),
        text_dim=shapes["text_embedding.0.weight"][1], text_len=text_len,
        freq_dim=shapes["time_embedding.0.weight"][1], patch_size=patch,
        qk_norm="blocks.0.self_attn.norm_q.weight" in shapes, cross_attn_norm="blocks.0.norm3.weight" in shapes,
    ).validate()


def _some(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


def check_keys(state: WanState, expected: Mapping[str, tuple[int, ...]]) -> None:
    """Every expected tensor present once with its shape, nothing else; ValueError naming what is wrong."""
    missing = sorted(set(expected) - set(state.shapes))
    unexpected = sorted(set(state.shapes) - set(expected))
    wrong = [f"{k}: expected {expected[k]}, found {state.shapes[k]}" for k in sorted(set(expected) & set(state.shapes))
             if tuple(state.shapes[k]) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s): {_some(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s): {_some(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} tensor(s) with wrong shapes: " + "; ".join(wrong[:6]))
    if problems:
        raise ValueError(f"{state.path} ({state.layout} names) does not match a Wan 2.1 text-to-video DiT: "
                         + " | ".join(problems) + ". The file is incomplete, edited, or another model; "
                         + names.SUPPORTED)


def _assign(model: nn.Module, name: str, tensor: Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    module = model.get_submodule(owner)
    old = getattr(module, leaf)
    # Replacing the meta placeholder (instead of copying into allocated storage) keeps one copy in memory.
    setattr(module, leaf, nn.Parameter(tensor, requires_grad=old.requires_grad) if isinstance(old, nn.Parameter)
            else tensor)


def load_wan_dit(path: str, device: torch.device | str = "cpu", dtype: torch.dtype | None = None, *,
                 num_heads: int | None = None, text_len: int = DEFAULT_TEXT_LEN,
                 state_key: str | None = None) -> tuple[nn.Module, ModelConfig, dict]:
    """Load a Wan 2.1 text-to-video DiT into WanDiT on `device`, tensor by tensor.

    path: a .safetensors file, one shard, an index .json, a folder, or a .pt/.pth file.
    dtype: default the file's own (bfloat16 for fp8 files, which are dequantized).
    num_heads: needed only when dim is not a multiple of 128 and no diffusers config.json says it.
    Returns (model in eval mode, config, info) where info describes the file (layout, prefix, quantization...).
    """
    from ..network.model import WanDiT  # heavy import; keep the module cheap to import

    with read_wan_state(path, state_key) as state:
        heads_from = "argument" if num_heads else "config.json" if state.num_heads_hint else f"dim/{WAN_HEAD_DIM}"
        config = infer_wan_config(state.shapes, num_heads=num_heads or state.num_heads_hint,
                                  text_len=text_len, path=path)
        names.refuse_channels(config.in_dim, config.out_dim, path)
        with torch.device("meta"):  # shapes only: no memory, no init
            model = WanDiT(config)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        check_keys(state, expected)
        file_dtype = state.file_dtype
        target = dtype or (torch.bfloat16 if file_dtype in _FP8 else file_dtype)
        with torch.no_grad():
            for name in expected:
                _assign(model, name, state.tensor(name, device, target))
        info = {"path": path, "files": list(state.files), "format": state.format, "layout": state.layout,
                "prefix": state.prefix, "state_key": state.state_key, "quantization": state.quantization,
                "file_dtype": file_dtype, "dtype": target, "num_heads_from": heads_from,
                "tensors": len(expected), "ignored": list(state.ignored)}
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a WanDiT tensor outside its state_dict would stay unallocated
        raise RuntimeError(f"internal error: WanDiT tensors {left[:5]} were not loaded from {path}")
    return model.eval(), config, info
