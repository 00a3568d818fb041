"""The mode-collapse table: toy 2-D mixtures and Stacked MNIST, plain GAN against the mitigations.

    .venv/bin/python bench/modes.py --only ring8-ns --only ring8-pack4     # these rows
    .venv/bin/python bench/modes.py --table-only                            # rebuild the table from MLflow

Each row is `dvc exp run --temp -n <name> -S ...` (download -> evaluator -> train -> sample -> evaluate in a
copy of the workspace, into the workspace's MLflow store), so the command beside a row reproduces it. The
table (bench/modes.md) takes modes covered, the high-quality share and the mode KL from the evaluate stage
and the training's wall-clock from its MLflow run. Run one at a time, with OMP_NUM_THREADS=1 on a shared
machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipes import SEED, bench_app, latest_runs  # noqa: E402  (bench/ is not a package)

ROOT = Path(__file__).resolve().parents[1]
# The 2-D networks of Metz et al. 2017 (appendix A): MLP G (2 x 128) and D (1 x 128), z of 256, batch 512,
# Adam (0.5, 0.999); at a CPU budget lr 1e-3 falling linearly to 0 (the paper's 1e-4 barely moves in 5,000
# steps); 2,500 samples judged (VEEGAN/PacGAN's count), a mode needing 20 of them.
# The unconditional non-saturating GAN of the seed recipe (the default's conditioning, hinge loss and
# in-training FID do not apply to 2-D points), then the 2-D settings.
TOY = [*SEED, "train.eval.every_kimg=0", "train.arch=mlp", "train.z_dim=256", "train.g_channels=128",
       "train.d_channels=128", "train.batch_size=512", "train.g.lr=0.001", "train.d.lr=0.001",
       "train.lr_decay=linear", "train.ema.enabled=false", "train.log_every=100", "train.image_every=500",
       "train.ckpt_every=1000", "evaluate.n=2500", "evaluate.modes.min_count=20"]
RING8 = ["base.dataset=ring8", *TOY, "train.kimg=5120"]  # 10,000 steps of 512
GRID25 = ["base.dataset=grid25", *TOY, "train.kimg=5120"]  # 10,000 steps of 512
# Stacked MNIST: the seed DCGAN at a CPU budget; 26,000 samples as PacGAN, a mode needing one of them
STACKED = [*SEED, "train.eval.every_kimg=0", "base.dataset=stacked-mnist", "evaluator.epochs=2",
           "evaluate.n=26000", "evaluate.modes.min_count=1", "train.g_channels=32", "train.d_channels=32",
           "train.batch_size=64", "train.kimg=50"]
RECIPES: dict[str, list[str]] = {
    "ring8-ns": RING8,
    "ring8-pack4": [*RING8, "train.pack=4"],
    "ring8-mbstd": [*RING8, "train.mbstd_group=4"],
    "grid25-ns": GRID25,
    "grid25-pack4": [*GRID25, "train.pack=4"],
    "grid25-mbstd": [*GRID25, "train.mbstd_group=4"],
    "stacked-dcgan": STACKED,
    "stacked-dcgan-pack2": [*STACKED, "train.pack=2"],
}
# PacGAN's deeper MLPs at its widths (G 4 x 400, D 3 x 200): the shallow Metz D leaves samples between modes
PACGAN_MLP = ["train.arch=mlp-pacgan", "train.g_channels=400", "train.d_channels=200"]
RECIPES["ring8-pacgan-ns"] = [*RING8, *PACGAN_MLP]
RECIPES["ring8-pacgan-pack4"] = [*RING8, *PACGAN_MLP, "train.pack=4"]
# grid25: WGAN-GP as in Gulrajani et al.'s 25-Gaussians toy (5 critic steps, lambda 0.1, Adam (0.5, 0.9)) on
# PacGAN's MLPs packed 4, 60,000 G steps of 128. The critic moves mass from crowded modes to empty ones
# across the gaps, where NS/hinge runs leave 4-7 modes empty at any length (bench/RESULTS.md).
RECIPES["grid25-wgan-gp-pack4"] = [*GRID25, *PACGAN_MLP, "train.pack=4", "train.loss=wgan",
                                   "train.reg.kind=gp", "train.reg.weight=0.1", "train.d_steps=5",
                                   "train.g.beta2=0.9", "train.d.beta2=0.9", "train.batch_size=128",
                                   "train.kimg=38400", "train.image_every=2000"]
# Stacked MNIST with the stabilisers of the default recipe (hinge, spectral norm on D, lr 5e-4), longer
STACKED_SN = [*STACKED, "train.loss=hinge", "train.spectral_norm.d=true", "train.g.lr=0.0005",
              "train.d.lr=0.0005", "train.kimg=150"]
RECIPES["stacked-hinge-sn"] = STACKED_SN
RECIPES["stacked-hinge-sn-pack2"] = [*STACKED_SN, "train.pack=2"]
# Longer, the learning rate falling to 0, with and without ProGAN's minibatch stddev in D (a later -S wins
# over STACKED_SN's kimg): issue 14's 1000-mode target at a budget one CPU core trains in under half an hour
STACKED_LONG = [*STACKED_SN, "train.kimg=500", "train.lr_decay=linear"]
RECIPES["stacked-hinge-sn-500kimg"] = STACKED_LONG
RECIPES["stacked-hinge-sn-mbstd-500kimg"] = [*STACKED_LONG, "train.mbstd_group=4"]
# The 500-kimg rows' KL is almost all in each channel's digit shares (3 at ~26%, 1 at ~2%), not in how the
# channels combine: PacGAN's packing is the mitigation aimed at that; then the same at twice the length
RECIPES["stacked-hinge-sn-mbstd-pack2-500kimg"] = [*STACKED_LONG, "train.mbstd_group=4", "train.pack=2"]
RECIPES["stacked-hinge-sn-mbstd-1000kimg"] = [*STACKED_LONG, "train.mbstd_group=4", "train.kimg=1000"]
# 1000 kimg reached 1000/1000 modes, KL 0.18: twice as long again, packed (a pack-2 D judges half as many
# images per step, so a kimg costs about half as much)
RECIPES["stacked-hinge-sn-mbstd-pack2-2000kimg"] = [*RECIPES["stacked-hinge-sn-mbstd-pack2-500kimg"],
                                                    "train.kimg=2000"]
# Half of the 500-kimg G's digits are ones the judge reads with < 0.9 confidence (real: 2%): a 32-channel G
# draws three digits at once, so give it and D the seed DCGAN's 64 channels
RECIPES["stacked-hinge-sn-mbstd-64ch-500kimg"] = [*STACKED_LONG, "train.mbstd_group=4", "train.g_channels=64",
                                                  "train.d_channels=64"]
# 64 channels beat 32 at 500 kimg (992 modes, KL 0.35 against 975, 0.56) and length beat packing: both
RECIPES["stacked-hinge-sn-mbstd-64ch-1000kimg"] = [*RECIPES["stacked-hinge-sn-mbstd-64ch-500kimg"],
                                                   "train.kimg=1000"]
# which reached 1000/1000 at KL 0.131 (0.10 of it digit shares, 27.5% clear): twice as long again
RECIPES["stacked-hinge-sn-mbstd-64ch-2000kimg"] = [*RECIPES["stacked-hinge-sn-mbstd-64ch-500kimg"],
                                                   "train.kimg=2000"]


def command(name: str) -> list[str]:
    # up to evaluate: the synthesize stage (CAS) does not apply to these data sets
    return ["dvc", "exp", "run", "--temp", "-n", name, *[a for kv in RECIPES[name] for a in ("-S", kv)],
            "evaluate"]


def table(names: list[str]) -> str:
    """Markdown rows for the named recipes, from the runs in the workspace's MLflow store."""
    rows = ["| recipe | modes covered | high quality (Stacked: clear) | mode KL | samples (min count) | "
            "budget | train wall-clock | command |", "|---|---|---|---|---|---|---|---|"]
    for name, r, minutes in latest_runs(names):
        m, p = r.data.metrics, r.data.params
        hq = next((f"{m[k]:.1%}" for k in ("high_quality", "clear_samples") if k in m), "-")
        # G steps: each shows D batch_size x d_steps real images
        steps = float(p["train.kimg"]) * 1000 / int(p["train.batch_size"]) / int(p.get("train.d_steps", 1))
        rows.append(f"| {name} | {m.get('modes_covered', float('nan')):.0f}/{m.get('modes_total', 0):.0f} | "
                    f"{hq} | {m.get('mode_kl', float('nan')):.3f} | {m.get('n', 0):.0f} "
                    f"({m.get('mode_min_count', 0):.0f}) | {p['train.kimg']} kimg ({steps:.0f} steps of "
                    f"{p['train.batch_size']}) | {minutes:.1f} min | "
                    f"`dvc exp run {' '.join(f'-S {kv}' for kv in RECIPES[name])} evaluate` |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    bench_app(RECIPES, command, table, ROOT / "bench" / "modes.md", __doc__)()
