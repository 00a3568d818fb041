"""Quick exploration of toy 2-D recipes: the train stage's engine called directly (no DVC, no MLflow). The
flags below are laid over params.yaml as dotted params keys (its recipe: key is not applied: the flags are
the recipe); ganforge.train validates and builds the run (validate, build) and trains it (train). Then the
evaluate stage's mode metrics on 2,500 samples (a mode needs 20 of them within 3 std). One JSON line per run.

    OMP_NUM_THREADS=1 .venv/bin/python bench/toy_sweep.py --pack 4 --gl 4 --dl 3 --gw 400 --dw 200

Defaults are bench/modes.py's toy rows (the Metz MLP, z 256, batch 512, NS loss, Adam 1e-3 (0.5, 0.999)
falling linearly to 0, no EMA, 10,000 steps). --gl/--dl override the hidden-layer counts of the --arch
entry, to explore depths before a registry entry exists. Figures from here
are exploration; the tables come from bench/modes.py (whole `dvc exp run`s into MLflow).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

from ganforge.config import parse_params
from ganforge.data.toy import toy_splits
from ganforge.metrics.modes import ModeTable, mode_histogram, mode_metrics
from ganforge.nets import ARCHITECTURES, architectures_for
from ganforge.sampling import generate
from ganforge.train import build, train, validate

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--data", default="ring8", help="ring8 | grid25")
ap.add_argument("--loss", default="ns", help="a key of ganforge.losses.LOSSES")
ap.add_argument("--reg", default="none", help="none | r1 | r2 | gp, or several joined by + (r1+r2)")
ap.add_argument("--regw", type=float, default=0.1, help="R1 gamma / GP lambda")
ap.add_argument("--dsteps", type=int, default=1, help="D steps per G step (WGAN-GP's toy code: 5)")
ap.add_argument("--sn", action="store_true", help="spectral norm on D")
ap.add_argument("--pack", type=int, default=1, help="PacGAN packing")
ap.add_argument("--mbstd", type=int, default=0, help="minibatch-stddev group")
ap.add_argument("--arch", default="mlp", choices=architectures_for("points"), help="a point architecture")
ap.add_argument("--gl", type=int, default=None, help="G's hidden layers (default: the entry's)")
ap.add_argument("--dl", type=int, default=None, help="D's hidden layers (default: the entry's)")
ap.add_argument("--gw", type=int, default=128, help="G's width")
ap.add_argument("--dw", type=int, default=128, help="D's width")
ap.add_argument("--steps", type=int, default=10000, help="G steps")
ap.add_argument("--batch", type=int, default=512)
ap.add_argument("--lr", type=float, default=1e-3, help="Adam lr of G (and of D unless --lrd)")
ap.add_argument("--lrd", type=float, default=None, help="Adam lr of D (TTUR; default: --lr)")
ap.add_argument("--beta1", type=float, default=0.5, help="Adam beta1 of G and D")
ap.add_argument("--beta2", type=float, default=0.999, help="Adam beta2 of G and D")
ap.add_argument("--decay", default="linear", help="none | linear")
ap.add_argument("--z", type=int, default=256, help="z_dim")
ap.add_argument("--ema", type=float, default=0, help="EMA decay of G (0 = off)")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--save", default="", help="write the judged G's state_dict here (to re-judge, plot)")
ap.add_argument("--params", default=str(PARAMS), help="the params.yaml the flags are laid over")
a = ap.parse_args()

arch = ARCHITECTURES[a.arch]
if a.gl is not None:
    arch.G.hidden_layers = a.gl
if a.dl is not None:
    arch.D.hidden_layers = a.dl
# the flags as dotted params keys: every key a run reads (but train.eval.n and train.nproc: unused here)
overrides = {
    "base.seed": a.seed, "base.dataset": a.data, "train.device": "cpu", "train.fast": "off",
    "train.arch": a.arch, "train.spectral_norm.g": False, "train.spectral_norm.d": a.sn, "train.loss": a.loss,
    "train.reg.kind": a.reg, "train.reg.weight": a.regw, "train.reg.every": 1, "train.augment": "",
    "train.z_dim": a.z, "train.g_channels": a.gw, "train.d_channels": a.dw, "train.batch_size": a.batch,
    "train.g.lr": a.lr, "train.g.beta1": a.beta1, "train.g.beta2": a.beta2, "train.d.lr": a.lrd or a.lr,
    "train.d.beta1": a.beta1, "train.d.beta2": a.beta2, "train.d_steps": a.dsteps, "train.pack": a.pack,
    "train.mbstd_group": a.mbstd, "train.lr_decay": a.decay,
    "train.kimg": a.steps * a.batch * a.dsteps / 1000, "train.ema.enabled": a.ema > 0,
    "train.ema.decay": a.ema or 0.999, "train.eval.every_kimg": 0, "train.conditional": False,
    "train.fake_labels": "uniform", "train.label_matching": 0.0, "train.log_every": 1000,
    "train.image_every": 10**9, "train.ckpt_every": 10**9}
raw = {**yaml.safe_load(Path(a.params).read_text()), "recipe": None}
for dotted, value in overrides.items():
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        node = node[key]
    node[last] = value
p = parse_params(raw, a.params, sections=("base", "train"))
splits, info = toy_splits(a.data, 0)
for warning in validate(p, info, 1):  # every bad-flags case is a ConfigError here, as in the train stage
    print(f"warning: {warning}", file=sys.stderr)
t0 = time.time()
built = build(p, splits["train"][0], None, 0, data_hash="toy-sweep", device=torch.device("cpu"))
result = train(built.task, **built.engine, progress=False)
G = result.ema if a.ema else result.nets["G"]
if a.save:
    torch.save(G.state_dict(), a.save)
points = generate(G, 2500, seed=10**6, batch_size=2500)
modes = ModeTable.of(info).assign(points)
m = mode_metrics(modes, len(info["centres"]), 20)
print(json.dumps({"args": vars(a), "seconds": round(time.time() - t0),
                  **{k: m[k] for k in ("modes_covered", "high_quality", "mode_kl")},
                  # per mode, in info.json order (grid25: row by row): which modes are missing, and how badly
                  "mode_counts": mode_histogram(modes, len(info["centres"])).tolist()}), flush=True)
