"""A real browser (headless Chromium over the DevTools protocol) on the host's own frontend: the bundled
workflow loads, converts to exactly its API twin, queues, and the Live Preview widget shows changing frames
while the run is going. A screenshot is saved to tests/artifacts/."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from browser import Browser, chromium_path
from comfyhost import IN_CI, MARCH_2024
from graphs import load_api, load_ui

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SHOTS = {MARCH_2024: "comfyui-live-preview.png"}  # others: comfyui-live-preview-<host>.png
PLAYER = "app.graph._nodes.find(n => n.type === 'StreamDiTLivePreview')?.streamdit"


@pytest.fixture(scope="module")
def page(host):
    exe = chromium_path()
    if exe is None:
        if IN_CI:
            pytest.fail("chromium is required in CI (apt-get install -y chromium)", pytrace=False)
        pytest.skip("no chromium on this machine (apt-get install -y chromium)")
    browser = Browser(exe)
    try:
        browser.goto(host.url + "/")
        browser.wait_for("window.app && window.app.graph && window.app.extensions?.some(e => e.name === "
                         "'streamdit.nodes') && 1", timeout=90)
        time.sleep(1.0)
        browser.eval("document.querySelectorAll('.p-dialog-close-button, .p-dialog-header-close')"
                     ".forEach(b => b.click())")  # the new frontend opens a template browser on first start
        yield browser
    finally:
        browser.close()


def test_live_preview_plays_frames_during_the_run(host, page):
    name = "text_to_stream"
    host.post("/streamdit/free")
    page.eval(f"app.loadGraphData({json.dumps(load_ui(name))})")
    page.wait_for(f"{PLAYER} && 1")
    # the frontend's own conversion of the UI file is exactly the API twin the other tests run
    api = page.eval("app.graphToPrompt().then(p => p.output)")
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()} == load_api(name)

    page.eval("app.canvas.ds.scale = 0.9; app.canvas.ds.offset = [10, 10]; app.graph.setDirtyCanvas(true, true)")
    page.eval("app.queuePrompt(0, 1)")
    samples, shot = [], None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = page.eval(f"(() => {{ const p = {PLAYER};"
                          " return {shown: p.shown, label: p.label.textContent, image: p.canvas.toDataURL()}; })()")
        samples.append(state)
        if state["shown"] >= 24 and shot is None:
            shot = page.screenshot(ARTIFACTS / SHOTS.get(host.name, f"comfyui-live-preview-{host.name}.png"))
        if state["shown"] and "run 80/80" in state["label"] and len(samples) > 3 and state["shown"] >= 60:
            break
        time.sleep(0.1)
    during = [s for s in samples if "run 80/80" not in s["label"] and s["shown"] > 0]
    assert len({s["image"] for s in during}) >= 3, "the preview must change while frames are still being made"
    assert samples[-1]["shown"] >= 60, samples[-1]["label"]
    assert "16 fps video" in samples[-1]["label"] and "streams alive: 1" in samples[-1]["label"]
    assert shot is not None and shot.stat().st_size > 10_000


@pytest.mark.newest_host("the March-2024 frontend reads workflows from PNG files only")
@pytest.mark.parametrize("fmt", ["mp4", "webm"])
def test_a_saved_video_restores_its_workflow(host, client, page, fmt):
    """Dropping a saved run onto the frontend gives back its graph (the frontend's own file loader)."""
    prompt, ui = load_api("text_to_stream"), load_ui("text_to_stream")
    prompt["6"]["inputs"].update(format=fmt, filename_prefix=f"restore/{fmt}")
    prompt["4"]["inputs"].update(seconds=0.5, stream_id=f"restore-{fmt}")
    run = client.run(prompt, extra_pnginfo={"workflow": ui})
    assert run.status == "success", run.error()
    (video,) = run.outputs["6"]["videos"]
    page.eval("app.graph.clear()")
    assert page.eval("app.graph._nodes.length") == 0
    url = f"/view?filename={video['filename']}&subfolder={video['subfolder']}&type=output"
    page.eval(f"fetch({json.dumps(url)}).then(r => r.blob()).then(b => app.handleFile("
              f"new File([b], {json.dumps(video['filename'])}, {{type: {json.dumps(video['format'])}}})))")
    page.wait_for("app.graph._nodes.length > 0", timeout=30)
    restored = page.eval("app.graph._nodes.map(n => [n.id, n.type, n.widgets_values ?? null])")
    assert sorted((i, t) for i, t, _ in restored) == sorted((n["id"], n["type"]) for n in ui["nodes"])
    schedule = next(w for i, t, w in restored if t == "StreamDiTPromptSchedule")
    assert schedule[0] == next(n for n in ui["nodes"] if n["type"] == "StreamDiTPromptSchedule")["widgets_values"][0]


@pytest.mark.newest_host("subgraphs exist in the frontend from 2025")
def test_live_preview_plays_inside_a_subgraph(host, page):
    """Inside a subgraph the preview's execution id is a path ("12:5"); the player must still find its node."""
    host.post("/streamdit/free")
    ui = load_ui("text_to_stream")
    page.eval(f"app.loadGraphData({json.dumps(ui)})")
    page.wait_for(f"{PLAYER} && 1")
    made = page.eval("(() => { const p = app.graph._nodes.find(n => n.type === 'StreamDiTLivePreview');"
                     " const r = app.graph.convertToSubgraph(new Set([p]));"
                     " const s = app.graph._nodes.find(n => n.subgraph);"
                     " return {outer: s?.id, inner: s?.subgraph._nodes.map(n => [n.id, n.type]), root: "
                     "app.graph._nodes.map(n => n.type)}; })()")
    assert made["outer"] is not None and "StreamDiTLivePreview" not in made["root"], made
    inner = "app.graph._nodes.find(n => n.subgraph).subgraph._nodes.find(n => n.type === 'StreamDiTLivePreview')"
    api = page.eval("app.graphToPrompt().then(p => p.output)")
    (preview_id,) = [k for k, v in api.items() if v["class_type"] == "StreamDiTLivePreview"]
    assert ":" in preview_id  # an execution id inside the subgraph
    page.eval("app.queuePrompt(0, 1)")
    page.wait_for(f"{inner}.streamdit?.shown >= 24", timeout=90)
    label = page.eval(f"{inner}.streamdit.label.textContent")
    assert "16 fps video" in label


@pytest.mark.parametrize("name", ["interactive_prompt_schedule", "pig_to_cat_edit"])
def test_bundled_workflows_convert_to_their_api_twins_in_the_frontend(host, page, name):
    """The frontend's widgets (Video Edit's source list has an upload button on the new one) keep every value."""
    page.eval(f"app.loadGraphData({json.dumps(load_ui(name))})")
    page.wait_for("app.graph._nodes.length > 0 && 1")
    api = page.eval("app.graphToPrompt().then(p => p.output)")
    assert {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()} == load_api(name)
