"""The pack's networks under ComfyUI's memory manager, on both hosts: loaded through core before each run, freed by
/free and by core's out-of-memory path, one copy per file when the dtype changes, dtype auto following core's flags.
Test-only probe nodes (testing_nodes/streamdit_testing) look inside the server process."""
from __future__ import annotations

import shutil
import time

import pytest
from comfyhost import TEST_MODEL
from graphs import stream_graph

MEMORY_MODEL = "streamdit-memory.safetensors"  # a copy of the test model no other test streams


@pytest.fixture(scope="module")
def memory_model(host):
    folder = host.models_dir / "streamdit"
    shutil.copyfile(folder / TEST_MODEL, folder / MEMORY_MODEL)
    return MEMORY_MODEL


def graph(stream_id: str, dtype: str = "float32", model: str = MEMORY_MODEL, seconds: float = 0.25) -> dict:
    g = stream_graph(model=model, stream_id=stream_id, seconds=seconds, width=64, height=64, preview=False)
    g["1"]["inputs"]["dtype"] = dtype
    g["7"] = {"class_type": "StreamDiTTestCaptureFrames", "inputs": {"frames": ["4", 0], "name": stream_id}}
    g["8"] = {"class_type": "StreamDiTTestWatch", "inputs": {"model": ["1", 0]}}
    return g


def ok(run):
    assert run.status == "success", run.error()
    return run


def memory(client, path_suffix: str = "") -> dict:
    run = ok(client.run({"1": {"class_type": "StreamDiTTestMemory", "inputs": {"path_suffix": path_suffix}}}))
    return run.outputs["1"]["memory"][0]


def test_our_network_is_loaded_through_core_during_a_run(client, memory_model):
    run = ok(client.run(graph("mem-loaded")))
    (info,) = run.outputs["7"]["capture"]
    assert info["models"] >= 1 and info["loaded_during_run"], info  # listed in current_loaded_models while it ran
    assert "WanDiT" in memory(client)["loaded"]  # and still listed after it (core unloads it when it needs to)


def test_a_changed_dtype_leaves_one_copy(client, memory_model):
    ok(client.run(graph("mem-dtype", "float32")))
    run = ok(client.run(graph("mem-dtype", "bfloat16")))
    (watch,) = run.outputs["8"]["watch"]
    assert watch["dtypes"] == ["torch.bfloat16"]
    seen = memory(client, MEMORY_MODEL)
    assert seen["models"] == 1 and seen["storage_bytes"] == watch["bytes"], seen


def test_dtype_auto_follows_cores_unet_flags(client, memory_model):
    flag = {"1": {"class_type": "StreamDiTTestSetUnetFlag", "inputs": {"flag": "bf16_unet"}}}
    ok(client.run(flag))
    try:
        run = ok(client.run(graph("mem-auto", "auto")))
        assert run.outputs["8"]["watch"][0]["dtypes"] == ["torch.bfloat16"]
    finally:
        flag["1"]["inputs"]["flag"] = ""
        ok(client.run(flag))
    run = ok(client.run(graph("mem-auto", "auto")))
    assert run.outputs["8"]["watch"][0]["dtypes"] == ["torch.float32"]  # a CPU without flags: float32


def test_free_lets_our_modules_go(host, client, memory_model):
    ok(client.run(graph("mem-free")))
    assert memory(client)["alive"] >= 1
    status, _ = host.post("/free", {"unload_models": True, "free_memory": True})
    assert status == 200
    deadline = time.monotonic() + 30
    while host.get("/streamdit/streams")["alive"] and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # the worker resets core's caches right after our streams are freed
    seen = memory(client)
    assert seen["alive"] == 0, f"after /free {seen['alive']} of {seen['watched']} watched modules are still alive"
    assert "WanDiT" not in seen["loaded"]


@pytest.mark.newest_host("the March-2024 host has no out-of-memory unload path (its execution.py catches no OOM)")
def test_cores_out_of_memory_path_frees_our_streams(host, client, memory_model):
    ok(client.run(graph("mem-oom-other")))
    assert host.get("/streamdit/streams")["alive"] >= 1
    g = stream_graph(model=MEMORY_MODEL, stream_id="mem-oom", seconds=0.25, preview=False)
    g["7"] = {"class_type": "StreamDiTTestOOM", "inputs": {"frames": ["4", 0]}}
    err = client.run(g).error()
    assert err and "out of memory" in err["exception_message"]
    assert host.get("/streamdit/streams")["alive"] == 0
    assert "Got an OOM, unloading all loaded models" in host.log_tail(200_000)
