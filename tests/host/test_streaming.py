"""Streaming behaviour on a real host: live frames, seamless continuation, cancel, reset, live prompts, free."""
from __future__ import annotations

import threading
import time

import torch
from comfyhost import TEST_MODEL
from graphs import stream_graph, with_inputs

from streamdit.io.png import read_png
from streamdit.io.video import read_video

FPS = 16


def png_frames(host, run, node="8") -> torch.Tensor:
    images = run.outputs[node]["images"]
    return torch.stack([read_png(host.output_dir / i["subfolder"] / i["filename"]) for i in images])


def preview_info(run, node="5") -> dict:
    return run.outputs[node]["streamdit"][0]


def test_preview_frames_arrive_while_the_run_is_going(client):
    prompt = stream_graph(seconds=3, stream_id="incremental")
    run = client.run(prompt)
    assert run.status == "success", run.error()
    events = run.of("streamdit.frames")
    executed = [t for t, d in run.of("executed") if d["node"] == "5"]
    assert len(events) == 3 * FPS // 2, "one event per chunk of c=2 frames"
    assert [d["done"] for _, d in events] == list(range(2, 3 * FPS + 1, 2))
    assert [d["index"] for _, d in events] == list(range(0, 3 * FPS, 2))
    assert all(d["node"] == "5" and len(d["frames"]) == 2 and d["fps"] == FPS for _, d in events)
    first, last = events[0][0], events[-1][0]
    assert first < last <= executed[0], "frames must reach the client before the preview node finishes"
    # incremental: the events are spread over the generation, not sent in one burst at the end
    assert last - first > 0.5 * (executed[0] - events[0][0]) and last - first > 0.2
    progress = run.of("progress")
    assert progress and progress[-1][1]["value"] == progress[-1][1]["max"] == 3 * FPS


def test_queueing_again_continues_the_stream_bit_exactly(host, client):
    one = stream_graph(seconds=1, stream_id="exact-split", preview=False, images="exact/split")
    first = client.run(one)
    second = client.run(one)
    whole = client.run(stream_graph(seconds=2, stream_id="exact-whole", preview=False, images="exact/whole"))
    for run in (first, second, whole):
        assert run.status == "success", run.error()
    split = torch.cat([png_frames(host, first), png_frames(host, second)])
    reference = png_frames(host, whole)
    assert split.shape == reference.shape == (2 * FPS, 64, 64, 3)
    assert torch.equal(split, reference), "run 1 + run 2 must equal one uninterrupted run, bit for bit"


def test_prompt_edits_between_runs_change_the_running_stream(host, client):
    # a checkpoint from the pack's models/streamdit folder whose weights all matter (see comfyhost.TEST_MODEL)
    pig = stream_graph(schedule="a pig walking right on grass", seconds=1, stream_id="live-a", images="live/a",
                       model=TEST_MODEL)
    first = client.run(pig)
    changed = client.run(with_inputs(pig, "3", schedule="a cat jumping at night"))
    ref = with_inputs(with_inputs(pig, "4", stream_id="live-b"), "8", filename_prefix="live/b")
    client.run(ref)
    kept = client.run(ref)
    assert first.status == changed.status == kept.status == "success"
    assert not preview_info(changed)["new_stream"] and preview_info(changed)["start_frame"] == FPS
    assert not torch.equal(png_frames(host, changed), png_frames(host, kept)), "the new prompt must show"


def test_seed_change_or_reset_starts_a_new_stream(client):
    base = stream_graph(seconds=0.5, stream_id="seeds")
    graphs = (base, base, with_inputs(base, "2", seed=2), with_inputs(base, "4", reset=True), base)
    runs = [client.run(g) for g in graphs]
    infos = [preview_info(r) for r in runs]
    assert [i["new_stream"] for i in infos] == [True, False, True, True, False]
    assert [i["start_frame"] for i in infos] == [0, 8, 0, 0, 8]


def test_interrupt_stops_within_a_chunk_and_the_stream_resumes(host, client):
    # s=4 micro steps per chunk: chunks take long enough that websocket latency cannot hide a late stop
    prompt = stream_graph(seconds=120, stream_id="cancel", save="mp4", micro_steps=4)
    status, reply = client.queue(prompt)
    assert status == 200, reply
    seen = []

    def on_message(t, msg):
        if msg["type"] == "streamdit.frames":
            seen.append(msg["data"])
            if len(seen) == 8:
                threading.Thread(target=host.post, args=("/interrupt",), daemon=True).start()

    run = client.wait(reply["prompt_id"], timeout=120, on_message=on_message)
    assert run.of("execution_interrupted"), [m["type"] for _, m in run.messages]
    # how soon it stops is counted in chunks, not seconds (a wall-clock bound fails on a loaded machine)
    made = seen[-1]["index"] + len(seen[-1]["frames"])
    assert 8 * 2 <= made < 120 * FPS
    assert len(seen) <= 8 + 3, "the run must stop within about one chunk of the cancel"
    # the cancelled run's file is finalised and playable
    files = sorted((host.output_dir / "tests").glob("cancel_*.mp4"))
    assert files, "the cancelled run left no file"
    frames, fps = read_video(files[-1])
    assert frames.shape[0] == made and fps == FPS
    # the next run works and continues right after the last frame sent
    after = client.run(with_inputs(prompt, "4", seconds=0.5))
    assert after.status == "success", after.error()
    assert preview_info(after)["start_frame"] == made and not preview_info(after)["new_stream"]


def test_free_request_frees_the_streams(host, client):
    client.run(stream_graph(seconds=0.25, stream_id="to-free"))
    assert host.get("/streamdit/streams")["alive"] >= 1
    status, _ = host.post("/free", {"unload_models": True, "free_memory": True})
    assert status == 200
    deadline = time.monotonic() + 20
    while host.get("/streamdit/streams")["alive"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert host.get("/streamdit/streams")["alive"] == 0, "ComfyUI's /free must free the streams"
    again = client.run(stream_graph(seconds=0.25, stream_id="to-free"))
    assert preview_info(again)["new_stream"] and preview_info(again)["streams_alive"] == 1
