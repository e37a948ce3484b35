"""Video files in and out through ffmpeg (the binary that imageio-ffmpeg ships); PNG frames: png.py.

Frames are float32 tensors [T, H, W, 3] in [0, 1] on the CPU (ComfyUI IMAGE layout); writers also take a
single [H, W, 3] frame, uint8 tensors and numpy arrays.

VideoWriter streams frames into one ffmpeg process as they arrive, so a long or endless stream never sits in
memory, and the file stays playable if the stream stops early:

- closing the writer (normally, on an exception, or on a cancelled stream) finalises the file;
- if the Python process dies, ffmpeg (started in its own process group, so Ctrl-C does not reach it) sees
  the end of its input and finalises the file as well;
- if ffmpeg itself is killed, .mp4/.mov files are fragmented (``-movflags
  frag_keyframe+empty_moov+default_base_moof``, 1 s fragments, ``-flush_packets 1``) and .webm/.mkv files are
  written in 1 s clusters, so everything up to the last complete fragment decodes; what is lost is the last
  fragment plus the frames still inside the encoder (x264 lookahead, capped at 16 frames here; libvpx
  lag), about 1 to 3 s of video (seen at 16 fps: 96 frames written -> 64 decodable from mp4, 68 from webm;
  40 -> 17 from mp4, none from webm). A plain mp4 would be unreadable: its index (moov) is only written
  when ffmpeg finishes; "+faststart" is not used either, it rewrites the file at the end.
  The same property makes a file readable while it is being written.
- with ``audio_from`` (the audio of another file, e.g. the source of an edit) all of this still holds: the
  audio is cut with the frames written, and each fragment/cluster carries the audio of its frames (measured
  at 16 fps, about as without audio: read while written slowly, 48 frames -> 16 decodable with their
  audio, 96 -> 64; ffmpeg killed after 96 -> 64 from mp4 and from webm, the audio ending with them).

The writer runs ffmpeg through subprocess rather than imageio_ffmpeg.write_frames: that generator has no
way to add a second input, and long metadata (a ComfyUI workflow is often over 128 KiB, the Linux limit
for one command-line argument) has to go through an ffmetadata file given as a second input.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

PathLike = str | os.PathLike

# extension -> (default codec, default crf)
_FORMATS = {".mp4": ("libx264", 19), ".mov": ("libx264", 19), ".mkv": ("libx264", 19), ".webm": ("libvpx-vp9", 30)}
# extension -> (audio codec, bitrate) for audio_from: AAC where mp4/mov/mkv players expect it, Opus in webm
_AUDIO = {".mp4": ("aac", "160k"), ".mov": ("aac", "160k"), ".mkv": ("aac", "160k"), ".webm": ("libopus", "128k")}
# keys the mp4/mov muxer stores natively (udta/ilst); any other key needs +use_metadata_tags (mdta atoms)
_MOV_NATIVE_KEYS = {"title", "artist", "album", "album_artist", "comment", "genre", "copyright", "date", "composer",
                    "description", "synopsis", "encoder", "grouping", "lyrics", "keywords"}


def ffmpeg_exe() -> str:
    """Path of the ffmpeg executable (imageio-ffmpeg's binary, or IMAGEIO_FFMPEG_EXE)."""
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise RuntimeError("imageio-ffmpeg is not installed; run `pip install imageio-ffmpeg` "
                           "(it ships an ffmpeg binary)") from e
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
        raise RuntimeError(f"no ffmpeg binary found ({e}); run `pip install --force-reinstall imageio-ffmpeg` "
                           "or set IMAGEIO_FFMPEG_EXE to an ffmpeg executable") from e


def _popen_kwargs() -> dict[str, Any]:
    """Own process group, so that Ctrl-C in a terminal interrupts Python but not ffmpeg (which then finalises)."""
    if sys.platform.startswith("win"):
        return {"creationflags": 0x00000200 | 0x08000000}  # CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
    return {"start_new_session": True}


def _ffmpeg_says(text: str | bytes, limit: int = 300) -> str:
    """The last meaningful lines of ffmpeg's stderr, on one line."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = text.split("=== stderr ===")[-1]
    skip = ("ffmpeg version", "built with", "configuration:", "lib", "Input #", "Metadata:", "Duration:", "frame=",
            "Error opening input file ", "Error opening output file ", "Conversion failed")
    lines: list[str] = []
    for ln in text.splitlines():
        ln = re.sub(r"^\[[^\]]* @ 0x[0-9a-f]+\] ", "", ln.strip())
        if ln and not ln.startswith(skip) and ln not in lines:
            lines.append(ln)
    said = " | ".join(lines[-3:]) or "(no message)"
    return said if len(said) <= limit else "..." + said[-limit:]


def _exit_desc(rc: int) -> str:
    return f"killed by signal {-rc}" if rc < 0 else f"exit code {rc}"


def to_uint8(frames: torch.Tensor | np.ndarray) -> np.ndarray:
    """Frames [T, H, W, 3] or [H, W, 3], float in [0, 1] or uint8 -> contiguous uint8 numpy [T, H, W, 3].

    Floats are clamped to [0, 1] (NaN -> 0) and rounded to the nearest level.
    """
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"expected frames as a torch tensor [T, H, W, 3] in [0, 1], got {type(frames).__name__}")
    if frames.dim() == 3:
        frames = frames[None]
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames [T, H, W, 3] or [H, W, 3] (ComfyUI IMAGE layout, RGB last), got shape "
                         f"{tuple(frames.shape)}; permute channels-first tensors and drop alpha before writing")
    frames = frames.detach().cpu()
    if frames.dtype == torch.uint8:
        return np.ascontiguousarray(frames.numpy())
    if not frames.is_floating_point():
        raise TypeError(f"expected float frames in [0, 1] or uint8 frames, got dtype {frames.dtype}")
    x = torch.nan_to_num(frames.float(), nan=0.0).clamp_(0.0, 1.0).mul_(255.0).round_()
    return np.ascontiguousarray(x.to(torch.uint8).numpy())


def _escape_ffmetadata(s: str) -> str:
    return re.sub(r"([\\=;#\n\r])", r"\\\1", s)


def _parse_ffmetadata(text: str) -> dict[str, str]:
    """Global tags of an ffmetadata dump (a backslash escapes any character, newlines included)."""
    meta: dict[str, str] = {}
    for line in re.findall(r"((?:\\.|[^\\\n])*)\n?", text, re.S)[1:]:  # line 0 is ";FFMETADATA1"
        if line.startswith("["):
            break  # [STREAM] / [CHAPTER] sections follow the global tags
        m = re.match(r"((?:\\.|[^\\=])*)=(.*)", line, re.S)
        if m and not line.startswith((";", "#")):
            key, value = (re.sub(r"\\(.)", r"\1", g, flags=re.S) for g in m.groups())
            meta[key] = value
    return meta


def read_metadata(path: PathLike) -> dict[str, str]:
    """Container-level tags of a video file, keys lower-cased (Matroska stores them upper-case): {"comment": ...}."""
    path = _check_input(path)
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", path, "-map", "0:v?", "-c", "copy",
           "-frames:v", "0", "-f", "ffmetadata", "-"]
    out = subprocess.run(cmd, capture_output=True, **_popen_kwargs())
    if out.returncode != 0:
        raise ValueError(f"cannot read metadata from {path}: ffmpeg says: {_ffmpeg_says(out.stderr)}")
    return {k.lower(): v for k, v in _parse_ffmetadata(out.stdout.decode("utf-8", errors="replace")).items()}


def probe_audio(path: PathLike) -> dict[str, Any] | None:
    """The first audio stream of a media file as dict(codec, sample_rate, channels), or None if it has none.

    channels is ffmpeg's layout name ("mono", "stereo", "5.1", ...). Raises ValueError for a file ffmpeg cannot read.
    """
    path = _check_input(path)
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True, **_popen_kwargs())
    text = out.stderr.decode(errors="replace")
    if not re.search(r"^Input #0", text, re.M):
        raise ValueError(f"cannot read {path}: ffmpeg says: {_ffmpeg_says(text)}")
    m = re.search(r"^\s*Stream #0:\d+\S*: Audio: (\w+)[^,\n]*(?:, (\d+) Hz)?(?:, ([^,\n]+))?", text, re.M)
    if not m:
        return None
    return {"codec": m.group(1), "sample_rate": int(m.group(2)) if m.group(2) else None,
            "channels": m.group(3).strip() if m.group(3) else None}


class VideoWriter:
    """Write frames to a video file incrementally: ``with VideoWriter("out.mp4", 16) as w: w.write(frames)``.

    Formats by extension: .mp4/.mov/.mkv (libx264), .webm (libvpx-vp9). ``crf``: constant quality, lower is
    better (default 19 for x264, 30 for VP9). The frame size is fixed by the first frame. With 4:2:0/4:2:2 pixel
    formats an odd height/width is padded by one row/column repeating the edge (the file is then one pixel
    larger; ``padded`` says so). ``metadata``: container tags, e.g. {"comment": workflow_json}; values that are
    not strings are JSON-encoded; any length works (passed as an ffmetadata file). In .mp4/.mov a key outside
    the standard set (title, comment, description, ...) switches all tags to QuickTime "mdta" tags
    (+use_metadata_tags): keep the workflow in "comment" for the widest support. ``ffmpeg_args``: extra output
    options (before the path). ffmpeg starts with the first frame; no file is created if none is written.

    ``audio_start``: seconds into ``audio_from`` where this file's audio starts (frame 0 written <-> source time
    audio_start: a run that continues an edit). ``audio_from``: another file whose first audio stream is muxed
    alongside the frames (none if it has no
    audio: ``audio`` is then None), re-encoded (AAC 160k in .mp4/.mov/.mkv, Opus 128k in .webm) and in sync from
    time 0: output time t carries the source's audio at t, counted from the source's start as the frames of
    ``iter_video`` are (frame k of the source <-> frame k written). The output ends with the frames written
    (``-shortest``; audio shorter than that is padded with silence): a writer closed early, or a cancelled
    stream, gives a file whose audio ends within one audio frame (23 ms AAC, 20 ms Opus) of its last frame.
    Re-encoding rather than copying: the cut is to the sample only on decoded audio, and any source codec then
    fits any container (PCM, Vorbis or MP3 sources into mp4/webm).
    """

    def __init__(self, path: PathLike, fps: float | Fraction, *, codec: str | None = None, crf: int | None = None,
                 pix_fmt: str = "yuv420p", metadata: Mapping[str, Any] | None = None,
                 ffmpeg_args: Sequence[str] = (), audio_from: PathLike | None = None, audio_start: float = 0.0):
        self.path = Path(path)
        ext = self.path.suffix.lower()
        if ext not in _FORMATS:
            raise ValueError(f"unsupported video extension {ext!r} in {self.path}; use one of {sorted(_FORMATS)}")
        if not fps or fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        default_codec, default_crf = _FORMATS[ext]
        self.fps = fps
        self.codec = codec or default_codec
        self.crf = crf if crf is not None else (default_crf if self.codec == default_codec else None)
        self.pix_fmt = pix_fmt
        self.metadata = {}
        for k, v in (metadata or {}).items():
            if not isinstance(k, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]+", k):
                raise ValueError(f"metadata key {k!r} is not allowed: use letters, digits and _ . : -")
            self.metadata[k] = v if isinstance(v, str) else json.dumps(v)
        self.ffmpeg_args = list(ffmpeg_args)
        self.audio_from = Path(audio_from) if audio_from is not None else None
        if not audio_start >= 0:
            raise ValueError(f"audio_start={audio_start} must be >= 0 (seconds into {audio_from})")
        self.audio_start = float(audio_start)  # seconds into audio_from where this file's audio starts
        # the source's first audio stream ({"codec", "sample_rate", "channels"}), None: no audio is written
        self.audio = probe_audio(audio_from) if audio_from is not None else None
        self.frame_size: tuple[int, int] | None = None  # (H, W) of the frames written, fixed by the first one
        self.padded = False
        self._pad = (0, 0)  # rows, columns added
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._stderr_said = ""
        self._meta_file: str | None = None
        self._frames = 0
        self._closed = False

    @property
    def frames_written(self) -> int:
        return self._frames

    @property
    def closed(self) -> bool:
        return self._closed

    def _command(self, width: int, height: int) -> list[str]:
        fps = self.fps if isinstance(self.fps, Fraction) else Fraction(self.fps).limit_denominator(100000)
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(fps), "-i", "pipe:0"]
        if self._meta_file:
            cmd += ["-f", "ffmetadata", "-i", self._meta_file]
        if self.audio is not None:  # -ss before -i: decoded and cut to the sample (a later run of an edit)
            cmd += (["-ss", f"{self.audio_start:.6f}"] if self.audio_start else []) + ["-i", str(self.audio_from)]
        if self._meta_file:
            cmd += ["-map_metadata", "1"]
        # explicit, tagged BT.709 so players and our reader agree on colours
        vf = "scale=out_color_matrix=bt709:out_range=tv" if self.pix_fmt.startswith("yuv") else None
        if self.audio is None:
            cmd += ["-map", "0:v:0", *(["-vf", vf] if vf else [])]
        else:
            # Video and audio go through ONE filtergraph: it pulls whichever input its oldest output needs, so the
            # audio is decoded only as far as the frames written and reaches -shortest's sync queue in step with
            # the video. With the audio as a plain second input, ffmpeg reads it ahead while the video encoder
            # (x264 lookahead) holds the first second; the sync queue then either holds the video back for up
            # to -shortest_buf_duration (10 s: a file written slowly shows nothing for 10 s) or, with a small
            # buffer, fakes the video's progress and lets up to 1 s of audio past the last frame of a short
            # file. apad: a source whose audio ends before its video still gives every frame (silence after);
            # -shortest then ends the output with the last frame written, however few.
            a = 2 if self._meta_file else 1
            cmd += ["-filter_complex", f"[0:v:0]{vf or 'null'}[v];[{a}:a:0]apad[a]", "-map", "[v]", "-map", "[a]",
                    "-shortest", "-map_chapters", "-1"]
        cmd += ["-c:v", self.codec, "-pix_fmt", self.pix_fmt, "-g", str(max(1, round(2 * fps)))]
        if vf:
            cmd += ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]
        if self.crf is not None:
            cmd += ["-crf", str(self.crf)]
        if self.codec == "libx264":
            cmd += ["-x264-params", "rc-lookahead=16"]  # fewer frames held inside the encoder
        elif self.codec == "libvpx-vp9":
            cmd += ["-b:v", "0", "-deadline", "good", "-cpu-used", "4", "-row-mt", "1"]
        if self.audio is not None:
            codec, bitrate = _AUDIO[self.path.suffix.lower()]
            cmd += ["-c:a", codec, "-b:a", bitrate]
        if self.path.suffix.lower() in (".mp4", ".mov"):
            flags = "+frag_keyframe+empty_moov+default_base_moof"
            if self.audio is not None:
                # the moov waits for the first fragment, so it can carry the edit list that starts the video at 0
                # with the audio; without it the video starts after x264's B-frame delay (2 frames) while the
                # audio starts at 0, and a reader at a constant rate (iter_video) repeats the first frame twice
                flags += "+delay_moov"
            if set(self.metadata) - _MOV_NATIVE_KEYS:
                flags += "+use_metadata_tags"
            cmd += ["-movflags", flags, "-frag_duration", "1000000"]
        else:
            cmd += ["-cluster_time_limit", "1000"]
        return cmd + ["-flush_packets", "1", *self.ffmpeg_args, str(self.path)]

    def _start(self, width: int, height: int) -> None:
        if self.metadata:
            fd, self._meta_file = tempfile.mkstemp(suffix=".ffmeta", prefix="streamdit_")
            with open(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(";FFMETADATA1\n")
                for k, v in self.metadata.items():
                    f.write(f"{_escape_ffmetadata(k)}={_escape_ffmetadata(v)}\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(self._command(width, height), stdin=subprocess.PIPE,
                                      stdout=subprocess.DEVNULL, stderr=self._stderr, **_popen_kwargs())

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return _ffmpeg_says(self._stderr.read())

    def write(self, frames: torch.Tensor | np.ndarray) -> None:
        """Append frames [T, H, W, 3] (or one [H, W, 3]) in [0, 1]; they go to ffmpeg right away."""
        if self._closed:
            raise RuntimeError(f"the VideoWriter for {self.path} is closed; open a new one to write another file")
        arr = to_uint8(frames)
        t, h, w = arr.shape[:3]
        if t == 0:
            return
        if self.frame_size is None:
            pad = (h % 2 * ("420" in self.pix_fmt), w % 2 * ("420" in self.pix_fmt or "422" in self.pix_fmt))
            self._start(w + pad[1], h + pad[0])
            self.frame_size, self._pad, self.padded = (h, w), pad, any(pad)
        elif (h, w) != self.frame_size:
            raise ValueError(f"frame size mismatch for {self.path}: expected {self.frame_size[0]}x"
                             f"{self.frame_size[1]} (H x W, fixed by the first frame), got {h}x{w}; "
                             "resize the frames or start a new file")
        if self.padded:
            arr = np.pad(arr, ((0, 0), (0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
        try:
            self._proc.stdin.write(arr.data)
            self._proc.stdin.flush()
        except OSError:  # broken pipe: ffmpeg has exited
            rc = self._proc.wait()
            self.close(check=False)
            raise RuntimeError(f"ffmpeg stopped while writing {self.path} ({_exit_desc(rc)}): ffmpeg says: "
                               f"{self._stderr_said}. The frames written before may still be playable.") from None
        self._frames += t

    def close(self, check: bool = True) -> None:
        """Finalise the file and wait for ffmpeg; safe to call more than once.

        Raises RuntimeError if ffmpeg failed (``check=False`` skips that).
        """
        if self._closed:
            return
        self._closed = True
        proc, rc = self._proc, 0
        try:
            if proc is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
                try:
                    rc = proc.wait()
                except BaseException:  # interrupted while waiting: do not leave ffmpeg behind
                    proc.kill()
                    proc.wait()
                    raise
        finally:
            self._stderr_said = self._stderr_text()
            if self._stderr is not None:
                self._stderr.close()
            if self._meta_file:
                try:
                    os.unlink(self._meta_file)
                except OSError:
                    pass
        if check and rc != 0:
            raise RuntimeError(f"ffmpeg failed on {self.path} ({_exit_desc(rc)}): ffmpeg says: {self._stderr_said}")

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # on an exception (e.g. a cancelled stream) the file is still finalised; the original error wins
        self.close(check=exc_type is None)


# -- reading ---------------------------------------------------------------------------------------------------
def _check_input(path: PathLike) -> str:
    p = Path(path)
    if not p.exists():
        where = "" if p.is_absolute() else f" (looked in {Path.cwd()})"
        raise FileNotFoundError(f"file not found: {p}{where}; check the path and file name")
    if p.is_dir():
        raise IsADirectoryError(f"{p} is a directory, not a file")
    return str(p)


def _open(path: PathLike):
    """(frame generator, meta) from imageio_ffmpeg.read_frames, with readable errors."""
    path = _check_input(path)
    ffmpeg_exe()
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(path)
    try:
        meta = next(gen)
        if not meta.get("size"):
            raise OSError("no video stream found")
    except Exception as e:
        gen.close()
        if "received no packets" in str(e) or "Output file is empty" in str(e):
            raise ValueError(f"{path} contains no video frames (cut off before the first frame?)") from e
        raise ValueError(f"cannot read video {path}: ffmpeg says: {_ffmpeg_says(str(e))}; is it a complete video "
                         "file?") from e
    return gen, path, meta


def iter_video(path: PathLike, chunk_frames: int = 16, *, max_frames: int | None = None) -> Iterator[torch.Tensor]:
    """Decode a video chunk by chunk: yields float32 [t, H, W, 3] in [0, 1], t <= chunk_frames.

    File errors are raised here; a file without frames raises ValueError once the iterator is exhausted.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    return _chunks(*_open(path), chunk_frames, max_frames)


def _chunks(gen, path: str, meta: dict, chunk_frames: int, max_frames: int | None) -> Iterator[torch.Tensor]:
    width, height = meta["size"]
    buf, n = [], 0
    try:
        while max_frames is None or n < max_frames:
            try:
                with warnings.catch_warnings():
                    # imageio-ffmpeg leaves the pipes of an ffmpeg that has already exited to the garbage collector
                    # (its read_frames closes them only if the process still runs): not ours to report
                    warnings.filterwarnings("ignore", "unclosed file", ResourceWarning)
                    raw = next(gen)
            except StopIteration:
                break
            except Exception as e:
                raise ValueError(f"cannot decode {path} after {n} frames: ffmpeg says: {_ffmpeg_says(str(e))}") from e
            buf.append(raw)
            n += 1
            if len(buf) == chunk_frames:
                yield _frames_from_bytes(buf, height, width)
                buf = []
        if buf:
            yield _frames_from_bytes(buf, height, width)
    finally:
        gen.close()
    if n == 0:
        raise ValueError(f"{path} contains no video frames (cut off before the first frame?)")


def _fps(meta: dict) -> float:
    """ffmpeg prints 2 decimals: 23.98 -> 24000/1001 (likewise 29.97, 59.94); 0.0 when unknown."""
    fps = float(meta.get("fps") or 0.0)
    exact = [k * 1000 / 1001 for k in (24, 30, 48, 60, 120)]
    return next((e for e in exact if abs(e - fps) < 0.006), fps)


def _frames_from_bytes(buf: list[bytes], height: int, width: int) -> torch.Tensor:
    arr = np.frombuffer(b"".join(buf), np.uint8).reshape(len(buf), height, width, 3).astype(np.float32)
    return torch.from_numpy(arr).div_(255.0)


def read_video(path: PathLike, *, max_frames: int | None = None) -> tuple[torch.Tensor, float]:
    """Decode a whole video: (frames float32 [T, H, W, 3] in [0, 1], fps)."""
    gen, path, meta = _open(path)
    return torch.cat(list(_chunks(gen, path, meta, 64, max_frames))), _fps(meta)


def probe_video(path: PathLike, *, count_frames: bool = True) -> dict[str, Any]:
    """dict(width, height, fps, frames, duration, codec); frames/duration are None when unknown.

    ``count_frames`` decodes the whole file for an exact count (slow for long videos).
    """
    gen, path, meta = _open(path)
    gen.close()
    width, height = meta["size"]
    frames, duration = None, (meta.get("duration") or None)
    if count_frames:
        import imageio_ffmpeg

        try:
            frames, secs = imageio_ffmpeg.count_frames_and_secs(path)
            duration = duration or secs
        except (RuntimeError, ValueError, TypeError):
            pass
    return {"width": width, "height": height, "fps": _fps(meta), "frames": frames,
            "duration": duration, "codec": meta.get("codec")}
