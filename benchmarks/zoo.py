#!/usr/bin/env python
"""Train MNIST recipes for the same wall-clock budget each and tabulate what they reach.

    python benchmarks/zoo.py configs/mnist_dcgan.yaml configs/mnist_wgan.yaml ... [--minutes 10]
    python benchmarks/zoo.py --table                # rebuild docs/results.md from docs/results.json

Each recipe runs alone (`python launch/train.py CONFIG run_dir=runs/zoo/NAME train.total_kimg=1e6`),
gets SIGTERM after --minutes of wall clock (the trainer then writes a checkpoint and exits 0), and
is measured from that checkpoint: steps and images shown (state.pt), images/s over the run's wall
clock, `launch/metrics.py RUN --json` (MNIST Frechet distance, class coverage, conditional
accuracy), `benchmarks/sgan_accuracy.py` for the semi-supervised recipe, and a 10 x 10 sample grid
(`launch/generate.py --seeds 0-99`; conditional models: row = class; InfoGAN also `--codes` traversals;
BEGAN also its k_t / M / L curves from TensorBoard). Each result is merged
into docs/results.json (one entry per recipe, replaced when rerun) and docs/results.md's table is
rebuilt from it, so recipes can be run in several sittings. Run nothing else on the machine
meanwhile: the budget is wall clock.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
RESULTS = ROOT / "docs" / "results.json"
IMAGES = ROOT / "docs" / "images" / "zoo"


def _run(args, timeout=1800) -> subprocess.CompletedProcess:
    return subprocess.run([PY, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def train_for(config: Path, run_dir: Path, minutes: float) -> float:
    """Train until `minutes` of wall clock have passed, then SIGTERM; returns the wall seconds."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = [PY, str(ROOT / "launch" / "train.py"), str(config), f"run_dir={run_dir}", "train.total_kimg=1000000",
           "log.progress=false"]
    t0 = time.monotonic()
    log = open(run_dir.parent / f"{run_dir.name}.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        proc.wait(timeout=minutes * 60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
    wall = time.monotonic() - t0
    log.close()
    if proc.returncode != 0:
        raise SystemExit(f"{config.name}: training exited with {proc.returncode}; see {log.name}")
    return wall


def measure(config: Path, run_dir: Path, wall: float) -> dict:
    import torch
    ckpt = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    state = torch.load(ckpt / "state.pt", weights_only=True, map_location="cpu")
    row = {"recipe": config.stem, "config": str(config.relative_to(ROOT)), "minutes": round(wall / 60, 2),
           "steps": int(state["step"]), "kimg": round(int(state["nimg"]) / 1000, 1),
           "images_per_s": round(int(state["nimg"]) / wall, 1),
           "date": time.strftime("%Y-%m-%d"), "cpu_threads": os.cpu_count()}
    r = _run(["launch/metrics.py", run_dir, "--json"])
    row["metrics"] = json.loads(r.stdout) if r.returncode == 0 else {"error": (r.stderr or r.stdout).strip()[-300:]}
    from hifigan.config import load_config
    if load_config(config).objective.name == "sgan":  # not a substring test: "mnist_lsgan" contains "sgan"
        r = _run(["benchmarks/sgan_accuracy.py", run_dir])
        last = r.stdout.strip().splitlines()[-1] if r.returncode == 0 else ""
        row["sgan_test_accuracy"] = float(last.strip("| ").split("|")[-1]) if last else f"error: {r.stderr[-200:]}"
    out = run_dir / "grid"
    codes = ["--codes"] if "infogan" in config.stem else []
    r = _run(["launch/generate.py", run_dir, "--seeds", "0-99", "--out", out, *codes])
    if r.returncode == 0:
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "grid.png", IMAGES / f"{config.stem}.png")
        row["grid"] = f"images/zoo/{config.stem}.png"
        for f in sorted(out.glob("codes_*.png")):  # InfoGAN latent traversals
            shutil.copyfile(f, IMAGES / f"{config.stem}_{f.name}")
            row.setdefault("traversals", []).append(f"images/zoo/{config.stem}_{f.name}")
    else:
        row["grid_error"] = (r.stderr or r.stdout).strip()[-300:]
    curves = {"began": ["Scores/k_t", "Scores/M", "Scores/L_real", "Scores/L_fake"]}.get(config.stem.split("_")[-1])
    if curves:  # BEGAN: k_t and the convergence measure over the run, from its TensorBoard events
        row["curves"] = plot_scalars(run_dir, curves, IMAGES / f"{config.stem}_curves.png")
    return row


def plot_scalars(run_dir: Path, tags: list[str], path: Path) -> str:
    """One panel per TensorBoard scalar of the run (x = kimg); returns the PNG's path relative to docs/."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    fig, axes = plt.subplots(1, len(tags), figsize=(3.2 * len(tags), 2.6))
    for ax, tag in zip(axes, tags):
        ev = acc.Scalars(tag)
        ax.plot([e.step / 1000 for e in ev], [e.value for e in ev], lw=1)  # the trainer logs at step = nimg
        ax.set_title(tag.split("/")[-1])
        ax.set_xlabel("kimg")
    fig.tight_layout()
    IMAGES.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path.relative_to(ROOT / "docs"))


def _fmt(v, nd=1):
    return "" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def table(results: dict) -> str:
    lines = ["| recipe | minutes | steps | kimg | images/s | MNIST FD | coverage | cond. accuracy | SGAN test acc. | samples |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in sorted(results):
        r = results[name]
        m = r.get("metrics", {})
        fd, cov, acc = m.get("mnist_fd"), m.get("mnist_coverage"), m.get("mnist_cond_acc")
        grid = f"![{name}]({r['grid']})" if r.get("grid") else ""
        extra = [*r.get("traversals", []), *([r["curves"]] if r.get("curves") else [])]
        grid += "".join(f" [{Path(p).stem.removeprefix(name + '_')}]({p})" for p in extra)
        lines.append(f"| {name} | {r['minutes']} | {r['steps']} | {r['kimg']} | {r['images_per_s']} | {_fmt(fd)} | "
                     f"{_fmt(cov, 0)} | {_fmt(acc, 3)} | {r.get('sgan_test_accuracy', '')} | {grid} |")
    return "\n".join(lines)


def write(results: dict) -> None:
    from hifigan.io import atomic_write
    text = json.dumps(results, indent=1, sort_keys=True)
    atomic_write(RESULTS, lambda tmp: Path(tmp).write_text(text))
    md = ROOT / "docs" / "results.md"
    text = md.read_text() if md.exists() else "# Results\n\n<!-- zoo-table -->\n<!-- /zoo-table -->\n"
    head, _, rest = text.partition("<!-- zoo-table -->")
    _, _, tail = rest.partition("<!-- /zoo-table -->")
    text = f"{head}<!-- zoo-table -->\n{table(results)}\n<!-- /zoo-table -->{tail}"
    atomic_write(md, lambda tmp: Path(tmp).write_text(text))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="*", type=Path)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "zoo")
    p.add_argument("--table", action="store_true", help="only rebuild docs/results.md from docs/results.json")
    p.add_argument("--remeasure", action="store_true",
                   help="measure the existing runs of the given configs again (metrics, grid) without training")
    args = p.parse_args(argv)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    args.runs.mkdir(parents=True, exist_ok=True)
    for config in args.configs:
        config = config.resolve()
        run_dir = args.runs.resolve() / config.stem
        if args.remeasure:
            wall = results[config.stem]["minutes"] * 60
            results[config.stem] = {**results[config.stem], **measure(config, run_dir, wall)}
            results[config.stem]["minutes"] = round(wall / 60, 2)
            write(results)
            continue
        wall = train_for(config, run_dir, args.minutes)
        results[config.stem] = measure(config, run_dir, wall)
        write(results)
        print(json.dumps(results[config.stem]), flush=True)
    write(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
