"""A 10-second stream inside a real ComfyUI host vs the same stream from the command line.

    python bench/host_vs_cli.py [--seconds 10] [--repeats 3]

Both use the embedded default model (a random toy model in a checkout without one), 64x64, N=8, c=2,
s=1, mp4 output. The host time is queue-to-finish of a warmed-up server (live preview and Save Video
wired, as in the bundled workflow); the CLI time is the generation the CLI reports (model already
loaded). Prints JSON and a table. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "host"))
sys.path.insert(0, str(ROOT))

import comfyhost  # noqa: E402
from graphs import stream_graph  # noqa: E402


def host_runs(seconds: float, repeats: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        host = comfyhost.start_host(Path(tmp))
        client = comfyhost.Client(host)
        try:
            client.run(stream_graph(seconds=1.0, stream_id="warmup", save="mp4"), timeout=300)  # loads the model
            for i in range(repeats):
                run = client.run(stream_graph(seconds=seconds, stream_id=f"bench{i}", save="mp4"), timeout=600)
                if run.status != "success":
                    raise RuntimeError(f"host run failed: {run.error()}")
                times.append(run.end - run.start)
        finally:
            client.close()
            host.stop()
    return times


def cli_runs(seconds: float, repeats: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            cmd = [sys.executable, "-m", "streamdit", "generate", "--prompt", "a pig walking right on grass",
                   "--seconds", str(seconds), "--seed", "1", "--out", f"{tmp}/cli{i}.mp4"]
            out = subprocess.run(cmd,
                                 cwd=ROOT, capture_output=True, text=True, check=True,
                                 env={"STREAMDIT_NO_PROGRESS": "1", "PATH": "/usr/bin:/bin"})
            times.append(float(re.search(r" in ([0-9.]+) s:", out.stdout).group(1)))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cli = cli_runs(args.seconds, args.repeats)
    host = host_runs(args.seconds, args.repeats)
    record = {"video_seconds": args.seconds, "cli_s": cli, "host_s": host,
              "cli_median_s": statistics.median(cli), "host_median_s": statistics.median(host)}
    record["host_overhead"] = record["host_median_s"] / record["cli_median_s"] - 1
    print(json.dumps(record, indent=2))
    print(f"\n{'where':6s} {'median s':>9s} {'FPS':>6s}")
    frames = args.seconds * 16
    for k in ("cli", "host"):
        print(f"{k:6s} {record[k + '_median_s']:9.2f} {frames / record[k + '_median_s']:6.1f}")
    print(f"host overhead: {100 * record['host_overhead']:+.0f}%")


if __name__ == "__main__":
    main()
