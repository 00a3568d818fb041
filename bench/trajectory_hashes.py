"""Refactor guard: the sha256 of the trained generator's weights after short runs of several recipes.

Each recipe is a short run of the real train stage (stages/train.py) on real data, on one CPU thread (the
thread count can change the order of float reductions, hence bits). A restructuring of the training code
that is meant to change nothing must reproduce every hash bit for bit:

    OMP_NUM_THREADS=1 .venv/bin/python bench/trajectory_hashes.py --record bench/trajectory_hashes.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/trajectory_hashes.py --check bench/trajectory_hashes.json

Hashes depend on the machine's float kernels (torch version, CPU): compare only on the machine that
recorded them (the file says which).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from ganforge.config import set_dotted

ROOT = Path(__file__).resolve().parents[1]
SHORT = {"train.eval.every_kimg": 0, "train.log_every": 10, "train.image_every": 50, "train.ckpt_every": 50}
SEED_DCGAN = {"train.conditional": False, "train.loss": "ns", "train.spectral_norm.d": False,
              "train.g_channels": 64, "train.d_channels": 64, "train.batch_size": 128, "train.g.lr": 0.0002,
              "train.d.lr": 0.0002}
# name -> (dataset, params overrides); every run is a few dozen steps
RECIPES = {
    "default": ("mnist", {"train.kimg": 2}),
    "seed-dcgan": ("mnist", {**SEED_DCGAN, "train.kimg": 4}),
    "hinge-sn-lazy-r1-diffaug-ttur-dsteps2-decay": ("mnist", {
        "train.loss": "hinge", "train.spectral_norm.d": True, "train.reg.kind": "r1", "train.reg.weight": 1.0,
        "train.reg.every": 4, "train.augment": "color+translation+cutout", "train.d.lr": 0.001,
        "train.d_steps": 2, "train.lr_decay": "linear", "train.conditional": False, "train.kimg": 2}),
    "conditional-label-matching": ("mnist", {"train.label_matching": 0.5, "train.fake_labels": "histogram",
                                             "train.kimg": 2}),
    "wgan-gp": ("mnist", {"train.loss": "wgan", "train.reg.kind": "gp", "train.reg.weight": 10.0,
                          "train.spectral_norm.d": False, "train.d_steps": 5, "train.conditional": False,
                          "train.kimg": 3}),
    "ring8-pacgan-mbstd": ("ring8", {"train.arch": "mlp-pacgan", "train.loss": "ns",
                                     "train.conditional": False,
                                     "train.spectral_norm.d": False, "train.pack": 4, "train.mbstd_group": 2,
                                     "train.batch_size": 128, "train.z_dim": 2, "train.kimg": 6}),
    "stacked-mnist": ("stacked-mnist", {"train.conditional": False, "train.mbstd_group": 4,
                                        "train.lr_decay": "linear", "train.kimg": 2}),
}


def weights_sha256(path: Path) -> str:
    """sha256 over the generator file's weights (names and bytes, in name order); not its meta (run ids)."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode() + state[name].contiguous().numpy().tobytes())
    return digest.hexdigest()


def run(name: str, dataset: str, overrides: dict, work: Path, env: dict) -> str:
    d = work / name
    d.mkdir()
    params = set_dotted(yaml.safe_load((ROOT / "params.yaml").read_text()),
                      {"base.dataset": dataset, **SHORT, **overrides})
    (d / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    data = work / f"data-{dataset}"
    py = [sys.executable]
    if not data.exists():
        subprocess.run([*py, str(ROOT / "stages/download.py"), "--params", str(d / "params.yaml"), "--out",
                        str(data)], check=True, env=env, capture_output=True)
    proc = subprocess.run([*py, str(ROOT / "stages/train.py"), "--params", str(d / "params.yaml"), "--data",
                           str(data), "--model", str(d / "generator.pt"), "--results", str(d / "results"),
                           "--checkpoints", str(d / "checkpoints")], env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{name}: train stage exited {proc.returncode}\n{proc.stdout[-2000:]}\n"
                 f"{proc.stderr[-3000:]}")
    return weights_sha256(d / "generator.pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", type=Path, help="write the hashes to this JSON file")
    mode.add_argument("--check", type=Path, help="compare with this JSON file's hashes (exit 1 on a change)")
    ap.add_argument("--only", nargs="*", help="recipes to run (default: all)")
    args = ap.parse_args()
    names = args.only or list(RECIPES)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db"}
        hashes = {}
        for name in names:
            hashes[name] = run(name, *RECIPES[name], Path(tmp), env)
            print(f"{name:48s} {hashes[name]}", flush=True)
    if args.record:
        record = {"machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                             f"OMP_NUM_THREADS=1", "recipes": {n: {"dataset": RECIPES[n][0],
                             "overrides": RECIPES[n][1], "sha256": hashes[n]} for n in names}}
        args.record.write_text(json.dumps(record, indent=2) + "\n")
        return
    recorded = json.loads(args.check.read_text())["recipes"]
    changed = [n for n in names if recorded[n]["sha256"] != hashes[n]]
    print("all hashes match" if not changed else f"CHANGED: {', '.join(changed)}")
    sys.exit(1 if changed else 0)


if __name__ == "__main__":
    main()
