"""PNG frames in and out: an 8-bit RGB writer (zlib, "Up" row filter), a reader for the files it writes (other
PNGs decode through ffmpeg), and a writer of numbered frames. Written here because the engine's dependencies
(torch, numpy, imageio-ffmpeg) include no image library; ComfyUI's Pillow is not there on the command line."""
from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import torch

from .video import PathLike, _check_input, _ffmpeg_says, _popen_kwargs, ffmpeg_exe, to_uint8

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def write_png(path: PathLike, image: torch.Tensor | np.ndarray, *, compress_level: int = 4) -> None:
    """Write one frame [H, W, 3] (float in [0, 1] or uint8) as an 8-bit RGB PNG (zlib, "Up" row filter)."""
    img = to_uint8(image)
    if img.shape[0] != 1:
        raise ValueError(f"write_png takes one frame [H, W, 3], got {img.shape[0]} frames")
    h, w = img.shape[1:3]
    rows = img[0].reshape(h, w * 3)
    filtered = np.empty((h, 1 + w * 3), np.uint8)
    filtered[:, 0] = 2  # Up: difference to the row above (mod 256)
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    data = (_PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), compress_level)) + _png_chunk(b"IEND", b""))
    Path(path).write_bytes(data)


def read_png(path: PathLike) -> torch.Tensor:
    """Read a PNG as float32 [H, W, 3] in [0, 1] (alpha dropped). 8-bit files with filters None/Sub/Up (as
    written by write_png) are decoded here; anything else goes through ffmpeg."""
    p = Path(_check_input(path))
    data = p.read_bytes()
    if data[:8] != _PNG_SIGNATURE or len(data) < 33 or data[12:16] != b"IHDR":
        raise ValueError(f"{p} is not a PNG file (bad signature); was it written completely?")
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    channels = {0: 1, 2: 3, 6: 4}.get(ctype)
    img = _decode_png_simple(data, w, h, channels) if depth == 8 and channels and not interlace else None
    if img is None:
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(p), "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-frames:v", "1", "-"]
        out = subprocess.run(cmd, capture_output=True, **_popen_kwargs())
        if out.returncode != 0 or len(out.stdout) != h * w * 3:
            raise ValueError(f"cannot decode PNG {p}: ffmpeg says: {_ffmpeg_says(out.stderr)}")
        img = np.frombuffer(out.stdout, np.uint8).reshape(h, w, 3)
    return torch.from_numpy(img.astype(np.float32)).div_(255.0)


def _decode_png_simple(data: bytes, w: int, h: int, channels: int) -> np.ndarray | None:
    idat, pos = [], 8
    while pos + 8 <= len(data):
        n, tag = struct.unpack(">I4s", data[pos:pos + 8])
        if tag == b"IDAT":
            idat.append(data[pos + 8:pos + 8 + n])
        elif tag == b"IEND":
            break
        pos += 12 + n
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, 1 + w * channels)
    except (zlib.error, ValueError) as e:
        raise ValueError(f"corrupt PNG data ({e}); the file may be truncated") from e
    filters, rows = raw[:, 0], raw[:, 1:].copy()
    if filters.max(initial=0) > 2:
        return None  # Average / Paeth: let ffmpeg do it
    for y in range(h):
        if filters[y] == 1:
            rows[y] = (rows[y].reshape(w, channels).cumsum(axis=0) % 256).reshape(-1)
        elif filters[y] == 2 and y > 0:
            rows[y] += rows[y - 1]
    img = rows.reshape(h, w, channels)
    return np.repeat(img, 3, axis=2) if channels == 1 else img[..., :3]


class PngDirWriter:
    """Write frames as numbered PNGs ``<dir>/frame_000000.png``, ``frame_000001.png``, ... (lossless 8-bit)."""

    def __init__(self, directory: PathLike, *, prefix: str = "frame_", start: int = 0, compress_level: int = 4):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix, self.start, self.compress_level = prefix, start, compress_level
        self.paths: list[Path] = []
        self._closed = False

    @property
    def frames_written(self) -> int:
        return len(self.paths)

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Write frames [T, H, W, 3] (or one [H, W, 3]) in [0, 1]."""
        if self._closed:
            raise RuntimeError(f"the PngDirWriter for {self.directory} is closed")
        for img in to_uint8(frames):
            path = self.directory / f"{self.prefix}{self.start + len(self.paths):06d}.png"
            write_png(path, img, compress_level=self.compress_level)
            self.paths.append(path)

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> PngDirWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
