// StreamDiT pack: live preview player, saved-video preview and a fixed default seed control.
// Works with the legacy litegraph frontend of March 2024 and the current ComfyUI frontend: it only uses
// app.registerExtension, api.addEventListener, node.addDOMWidget and onExecuted, which both provide.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const EVENT = "streamdit.frames";
const MAX_LAG_SECONDS = 4.0; // drop queued frames beyond this, so the preview stays live

// Events name the preview by its execution id. Inside a subgraph that is a path, "12:5": node 5 of the subgraph
// that node 12 of the root graph stands for (how the frontend resolves its own previews' display ids).
function findNode(id) {
  let graph = app.rootGraph ?? app.graph;
  let node = null;
  for (const part of String(id).split(":")) {
    if (!graph) return null;
    node = graph.getNodeById?.(Number(part)) ?? graph.getNodeById?.(part) ?? null;
    if (!node) return null;
    graph = node.subgraph;
  }
  return node;
}

function statusText(s) {
  const parts = [];
  if (s.fps) parts.push(`${Number(s.fps).toFixed(0)} fps video`);
  if (s.genFps) parts.push(`made at ${Number(s.genFps).toFixed(1)} fps`);
  if (s.shownFps) parts.push(`shown ${s.shownFps.toFixed(1)} fps`);
  if (s.index != null) parts.push(`frame ${s.index}`);
  if (s.done != null && s.total) parts.push(`run ${s.done}/${s.total}`);
  if (s.alive != null) parts.push(`streams alive: ${s.alive}`);
  return parts.join(" · ") || "waiting for frames…";
}

class Player {
  constructor(node) {
    this.node = node;
    // the widget's own element is positioned (and its display reset) by the frontend: lay out inside it
    this.el = document.createElement("div");
    this.el.className = "streamdit-preview";
    const box = document.createElement("div");
    Object.assign(box.style, { display: "flex", flexDirection: "column", gap: "2px", width: "100%",
      height: "100%", overflow: "hidden" });
    this.el.append(box);
    this.canvas = document.createElement("canvas");
    this.canvas.width = 256;
    this.canvas.height = 256;
    Object.assign(this.canvas.style, { width: "100%", height: "0", flex: "1 1 0", minHeight: "0",
      background: "#111" });
    this.label = document.createElement("div");
    Object.assign(this.label.style, { font: "11px monospace", color: "#bbb", flex: "0 0 auto" });
    box.append(this.canvas, this.label);
    this.queue = []; // decoded ImageBitmaps / images waiting to be shown
    this.fps = 16;
    this.stats = { alive: null };
    this.shown = 0; // frames drawn since the page loaded (tests read this)
    this.shownTimes = [];
    this.lastDraw = 0;
    this.label.textContent = statusText(this.stats);
    this.tick = this.tick.bind(this);
    requestAnimationFrame(this.tick);
  }

  push(detail) {
    this.fps = detail.fps || this.fps;
    Object.assign(this.stats, { fps: detail.fps, genFps: detail.gen_fps, done: detail.done, total: detail.total,
      alive: detail.streams_alive, run: detail.run });
    detail.frames.forEach((b64, i) => {
      const img = new Image();
      const item = { img, index: detail.index + i, ready: false };
      img.onload = () => { item.ready = true; };
      img.src = `data:image/${detail.format || "jpeg"};base64,${b64}`;
      this.queue.push(item);
    });
    const maxQueue = Math.max(4, Math.round(this.fps * MAX_LAG_SECONDS));
    if (this.queue.length > maxQueue) this.queue.splice(0, this.queue.length - maxQueue);
  }

  tick(now) {
    if (!this.el.isConnected && this.removed) return;
    requestAnimationFrame(this.tick);
    const due = this.lastDraw + 1000 / this.fps;
    if (!this.queue.length || !this.queue[0].ready || now < due - 2) return;
    const item = this.queue.shift();
    const { img } = item;
    this.draw(img);
    this.lastDraw = now - this.lastDraw > 250 ? now : due; // keep a steady clock, resync after a pause
    this.shown += 1;
    this.shownTimes.push(now);
    while (this.shownTimes.length && now - this.shownTimes[0] > 1000) this.shownTimes.shift();
    this.stats.shownFps = this.shownTimes.length;
    this.stats.index = item.index;
    this.label.textContent = statusText(this.stats);
    this.node.setDirtyCanvas?.(true, false);
  }

  draw(img) {
    // fit the frame into the canvas, keeping its aspect ratio; sharp pixels for small frames
    const c = this.canvas;
    const w = Math.max(16, Math.round(c.clientWidth * (window.devicePixelRatio || 1)));
    const h = Math.max(16, Math.round(c.clientHeight * (window.devicePixelRatio || 1)));
    if (c.width !== w || c.height !== h) {
      c.width = w;
      c.height = h;
    }
    const ctx = c.getContext("2d");
    const scale = Math.min(w / img.naturalWidth, h / img.naturalHeight);
    const dw = img.naturalWidth * scale;
    const dh = img.naturalHeight * scale;
    ctx.fillStyle = "#111";
    ctx.fillRect(0, 0, w, h);
    ctx.imageSmoothingEnabled = scale < 2;
    ctx.drawImage(img, (w - dw) / 2, (h - dh) / 2, dw, dh);
  }

  executed(info) {
    if (!info) return;
    Object.assign(this.stats, { fps: info.fps, genFps: info.gen_fps, alive: info.streams_alive });
    this.label.textContent = statusText(this.stats);
  }
}

function addPlayer(node) {
  const player = new Player(node);
  const widget = node.addDOMWidget("streamdit_preview", "streamdit_preview", player.el, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => 140,
    getHeight: () => 260,
  });
  widget.serializeValue = () => undefined;
  node.streamdit = player;
  const onRemoved = node.onRemoved;
  node.onRemoved = function () {
    player.removed = true;
    return onRemoved?.apply(this, arguments);
  };
  if (node.size && node.size[1] < 320) node.setSize?.([Math.max(node.size[0], 300), 320]);
  return player;
}

function showVideos(node, videos) {
  if (!videos?.length) return;
  const v = videos[videos.length - 1];
  const params = new URLSearchParams({ filename: v.filename, subfolder: v.subfolder || "", type: v.type || "output" });
  const url = api.apiURL(`/view?${params}`);
  if (!node.streamditVideo) {
    const box = document.createElement("div");
    const video = document.createElement("video");
    Object.assign(video, { controls: true, loop: true, muted: true, autoplay: true });
    Object.assign(video.style, { width: "100%", height: "100%", objectFit: "contain", background: "#111" });
    const label = document.createElement("div");
    Object.assign(label.style, { font: "11px monospace", color: "#bbb" });
    box.append(video, label);
    const widget = node.addDOMWidget("streamdit_video", "streamdit_video", box, {
      serialize: false, hideOnZoom: false, getMinHeight: () => 140, getHeight: () => 240 });
    widget.serializeValue = () => undefined;
    node.streamditVideo = { video, label };
    if (node.size && node.size[1] < 320) node.setSize?.([Math.max(node.size[0], 300), 320]);
  }
  node.streamditVideo.video.src = url;
  node.streamditVideo.label.textContent = `${v.filename} · ${v.frames} frames @ ${v.frame_rate} fps`;
}

app.registerExtension({
  name: "streamdit.nodes",

  async setup() {
    api.addEventListener(EVENT, ({ detail }) => {
      const node = findNode(detail.node);
      if (!node) return;
      const player = node.streamdit ?? addPlayer(node);
      player.push(detail);
    });
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    const name = nodeData.name;
    if (name === "StreamDiTLivePreview") {
      const created = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = created?.apply(this, arguments);
        addPlayer(this);
        return r;
      };
      const executed = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (output) {
        executed?.apply(this, arguments);
        this.streamdit?.executed(output?.streamdit?.[0]);
      };
    } else if (name === "StreamDiTSaveVideo") {
      const executed = nodeType.prototype.onExecuted;
      nodeType.prototype.onExecuted = function (output) {
        executed?.apply(this, arguments);
        showVideos(this, output?.videos);
      };
    } else if (name === "StreamDiTBufferSettings") {
      // A new node continues its stream on every queue: the seed control starts at "fixed" (saved
      // workflows keep whatever they stored, since their values are applied after creation).
      const created = nodeType.prototype.onNodeCreated;
      nodeType.prototype.onNodeCreated = function () {
        const r = created?.apply(this, arguments);
        const control = this.widgets?.find((w) => w.name === "control_after_generate");
        if (control) control.value = "fixed";
        return r;
      };
    }
  },
});
