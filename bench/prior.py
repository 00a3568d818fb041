"""The generator as a prior, variant by variant (issue 33): inversion and centre-hole inpainting of the
first invert.n test images with the projector's warm start, perceptual term and steps switched, all on one
generator and judge, side by side; the baselines; and the centre hole with the true class given (what
masked inversion does once the class is right).

    OMP_NUM_THREADS=2 .venv/bin/python bench/prior.py --model models/generator.pt --data data/mnist \
        --out bench/prior-mnist.json

Reads params.yaml's invert section (the stages' settings) and overrides one key per variant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from ganforge.config import parse_params, set_dotted
from ganforge.data.prepared import load_split
from ganforge.invert import masks as M
from ganforge.invert.inpaint import biharmonic, compose, nearest
from ganforge.invert.projector import invert, project, warm_start
from ganforge.invert.run import load_prior, load_targets
from ganforge.invert.scores import psnr, read_as

VARIANTS = (
    ("params.yaml", {}),
    ("no warm start (seeds + class search)", {"invert.project.bank": 0}),
    ("no perceptual term", {"invert.project.perceptual": 0.0}),
    ("no prior term", {"invert.project.prior": 0.0}),
    ("50 steps", {"invert.project.steps": 50}),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models/generator.pt"))
    ap.add_argument("--evaluator", type=Path, default=Path("models/evaluator.pt"))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    raw = yaml.safe_load(args.params.read_text())
    base = parse_params(raw, args.params, ("base", "invert"))
    G, _, judge = load_prior(args.model, args.evaluator, "cpu")
    x, y = load_targets(args.data, base.invert.n, G)
    x_train = load_split(args.data, "train")[0]
    hole = M.draw_masks("centre", len(x), x.shape[2], base.base.seed, base.invert.inpaint.centre)
    rows = []
    baselines = (("biharmonic", biharmonic(x, hole)), ("nearest train image", nearest(x, hole, x_train)))
    for name, hole_fill in baselines:
        rows.append({"variant": name, "centre_accuracy": float(read_as(judge, hole_fill, y, "cpu").mean()),
                     "centre_hole_psnr": float(psnr(hole_fill, x, hole).mean())})
        print(rows[-1], flush=True)
    for name, overrides in VARIANTS:
        cfg = parse_params(set_dotted(yaml.safe_load(args.params.read_text()), overrides), args.params,
                           ("base", "invert")).invert
        row = {"variant": name, **overrides}
        t0 = time.perf_counter()
        P = invert(G, x, None, cfg.project, judge=judge, seed=base.base.seed, batch_size=cfg.batch_size,
                   device="cpu")
        row["invert_seconds"] = time.perf_counter() - t0
        row["invert_accuracy"] = float(read_as(judge, P.images, y, "cpu").mean())
        row["invert_psnr"] = float(psnr(P.images, x).mean())
        t0 = time.perf_counter()
        P = invert(G, x, hole, cfg.project, judge=judge, seed=base.base.seed, batch_size=cfg.batch_size,
                   device="cpu")
        filled = compose(x, P.images, hole)
        row["centre_seconds"] = time.perf_counter() - t0
        row["centre_accuracy"] = float(read_as(judge, filled, y, "cpu").mean())
        row["centre_hole_psnr"] = float(psnr(filled, x, hole).mean())
        rows.append(row)
        print(row, flush=True)
    # the class given rather than found: the bank's z as the start, the true label as the class
    cfg = base.invert.project
    z0, _ = warm_start(G, x, hole, cfg.bank, seed=base.base.seed, batch_size=1000, device="cpu")
    P = project(G, x, ~hole, steps=cfg.steps, lr=cfg.lr, lr_rampup=cfg.lr_rampup, lr_rampdown=cfg.lr_rampdown,
                noise=cfg.noise, noise_ramp=cfg.noise_ramp, perceptual=cfg.perceptual, prior=cfg.prior,
                judge=judge, seed=base.base.seed, batch_size=base.invert.batch_size, labels=y, start=z0)
    filled = compose(x, P.images, hole)
    rows.append({"variant": "true class given (oracle)", "centre_accuracy": float(read_as(judge, filled, y,
                 "cpu").mean()), "centre_hole_psnr": float(psnr(filled, x, hole).mean())})
    print(rows[-1], flush=True)
    args.out.write_text(json.dumps({"model": str(args.model), "n": len(x), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
