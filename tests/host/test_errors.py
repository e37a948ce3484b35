"""Bad inputs give a node error that names the problem, and the server keeps serving."""
from __future__ import annotations

from graphs import stream_graph, with_inputs


def rejected(client, prompt) -> dict:
    status, reply = client.queue(prompt)
    assert status == 400, reply
    return reply["node_errors"]


def messages(node_errors: dict, node: str) -> str:
    return " ".join(e.get("details", "") + " " + e.get("message", "") for e in node_errors[node]["errors"])


def test_missing_model_file_is_named_before_anything_runs(client):
    errors = rejected(client, stream_graph(model="no-such-model.safetensors"))
    text = messages(errors, "1")
    assert "no-such-model.safetensors" in text and "not found" in text and "models/streamdit" in text


def test_impossible_settings_are_reported_on_the_settings_node(client):
    text = messages(rejected(client, stream_graph(width=100)), "2")
    assert "width=100 is not a multiple of 16" in text and "use 96 or 112" in text
    text = messages(rejected(client, stream_graph(chunks=200, chunk_frames=4)), "2")
    assert "800 latent frames" in text and "chunks <= 64" in text


def test_bad_schedule_is_reported_on_the_prompt_node(client):
    text = messages(rejected(client, stream_graph(schedule="0s: a pig walking right on grass\nthen a cat")), "3")
    assert "line 2" in text and "has no time" in text


def test_clip_connected_to_a_model_with_its_own_text_encoder(client):
    prompt = stream_graph(seconds=0.25, stream_id="clip")
    prompt["9"] = {"class_type": "StreamDiTTestFakeCLIP", "inputs": {}}
    prompt["3"]["inputs"]["clip"] = ["9", 0]
    run = client.run(prompt)
    err = run.error()
    assert err and err["node_type"] == "StreamDiTSampler"
    assert "has its own text encoder; disconnect the CLIP input" in err["exception_message"]


def test_unknown_word_and_the_server_keeps_serving(host, client):
    run = client.run(stream_graph(schedule="a unicorn walking right on grass", stream_id="words"))
    err = run.error()
    assert err and "unknown word(s) 'unicorn'" in err["exception_message"]
    ok = client.run(with_inputs(stream_graph(seconds=0.25, stream_id="words"), "3", schedule="a dog walking left"))
    assert ok.status == "success", ok.error()
    assert "StreamDiTSampler" in host.get("/object_info/StreamDiTSampler")
