"""Throughput over time while the route moves between nodes: the lab demo with anycast and without, in one PNG.

Runs ``anycast-tcp lab demo --timeline`` twice (three real nodes in namespaces, the route moving every 200 ms),
then plots the client's download rate per progress interval, with a mark at each route move and the node the
route points at. Needs root and matplotlib (``make bench`` installs it).

    python bench/plot_route_moves.py [--megabytes 2000] [--out docs/route-moves.png]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_demo(megabytes: int, anycast: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        timeline = Path(tmp) / "timeline.json"
        argv = [sys.executable, "-m", "appliance.cli", "lab", "demo", "--megabytes", str(megabytes)]
        argv += ["--timeline", str(timeline), "--prefix", "aplot"] + ([] if anycast else ["--no-anycast"])
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if not timeline.exists():
            raise SystemExit(f"the lab demo wrote no timeline: {done.stdout[-800:]} {done.stderr[-800:]}")
        return json.loads(timeline.read_text())


def rates(progress: list[list[float]]) -> tuple[list[float], list[float]]:
    """Mbit/s over each interval between two progress reports (from the connection's opening, at 0 bytes), as a
    step function of time that ends at the last report (or at the reset)."""
    times, values = [], []
    for (t0, n0), (t1, n1) in pairwise([(0.0, 0), *progress]):
        if t1 > t0:
            times.append(t0)
            values.append((n1 - n0) * 8 / (t1 - t0) / 1e6)
    if times:
        times.append(progress[-1][0])
        values.append(values[-1])
    return times, values


def plot(runs: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(runs), 1, figsize=(10, 3.2 * len(runs)), sharex=True)
    end = max(run["progress"][-1][0] for run in runs if run["progress"])
    for axis, run in zip(axes, runs):
        times, values = rates(run["progress"])
        axis.step(times, values, where="post", color="tab:blue", linewidth=1.2)
        top = max(values, default=1) * 1.15
        for t, node in run["moves"]:
            if t <= end:
                axis.axvline(t, color="tab:gray", linewidth=0.6, alpha=0.6)
                axis.text(t, top * 0.97, str(node), fontsize=7, ha="center", va="top", color="tab:gray")
        axis.set_ylim(0, top)
        axis.set_ylabel("Mbit/s")
        title = "anycast-tcp: three nodes, forwarding and claims" if run["anycast"] else "the same nodes as plain TCP"
        axis.set_title(f"{title}\n{run['verdict']}", fontsize=9, loc="left")
    axes[-1].set_xlim(0, end)
    axes[-1].set_xlabel("seconds since the connection opened (grey lines: route moves, labelled with the new node)")
    figure.tight_layout()
    figure.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "docs" / "route-moves.png"))
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("plot_route_moves.py needs root: the lab demo creates network namespaces")
    runs = [run_demo(args.megabytes, anycast=True), run_demo(args.megabytes, anycast=False)]
    plot(runs, Path(args.out))
    for run in runs:
        print(run["verdict"])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
