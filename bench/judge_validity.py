"""Does the label-free judge judge? Both judges of one data set, side by side (issue 29).

1. Disturbances (Heusel et al. 2017, appendix A1): FID of evaluate.n real train images, disturbed at each
   level of metrics/disturb.py (and mode dropping: real images of the first 9, 7, 5, 3 classes), against
   each judge's reference; every curve must rise.
2. Ranking agreement: generators of different quality (G_ema snapshots of one run of the default recipe at
   doubling kimg up to its 170-kimg budget, and a recipe without its stabilisers), each scored by fid_ratio
   in both judges; the Spearman correlation of the two rankings.

    OMP_NUM_THREADS=1 .venv/bin/python bench/judge_validity.py --dataset mnist --out bench/judge-mnist.json

Reads data/<dataset> (the download stage's output) and params.yaml (the evaluator, evaluate and train
sections as the stages use them); trains both judges and the generators here, writes one JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ganforge.config import parse_params, set_dotted
from ganforge.data.prepared import content_hash, load_info, load_split
from ganforge.metrics import Settings, build_evaluator, extract
from ganforge.metrics.disturb import LEVELS, disturb, drop_modes
from ganforge.metrics.fid import feature_stats, fid_from_stats
from ganforge.sampling import generate
from ganforge.train import build, train

# (name, overrides, kimg of the snapshots): the default recipe, and one without its stabilisers
RUNS = (
    ("default", {}, (1, 2, 4, 8, 16, 32, 64, 128, 170)),
    ("ns-no-sn-no-ema", {"train.loss": "ns", "train.spectral_norm.d": False, "train.ema.enabled": False},
     (4, 16, 64)),
)


def params(overrides: dict):
    raw = yaml.safe_load(Path("params.yaml").read_text())
    return parse_params(set_dotted(raw, overrides), Path("params.yaml"),
                        sections=("base", "evaluator", "evaluate", "train"))


def snapshots(p, x, y, K, kimgs, data_hash):
    """{kimg: G_ema (or G) at that point} of one training run of params p, to max(kimgs)."""
    p = p.model_copy(update={"train": p.train.model_copy(update={"kimg": float(max(kimgs))})})
    built = build(p, x, y, K, data_hash=data_hash, device=torch.device("cpu"))
    img_per_step = p.train.batch_size * p.train.d_steps
    at = {max(1, round(k * 1000 / img_per_step)): k for k in kimgs}
    got: dict = {}
    step = [0]

    def evaluate(net):  # called every step (eval_every 1): keep a copy at the chosen steps
        step[0] += 1
        if step[0] in at:
            got[at[step[0]]] = copy.deepcopy(net).eval()
        return {"fid": 0.0}

    train(built.task, **{**built.engine, "eval_every": 1, "evaluate": evaluate, "progress": False})
    return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = Path("data") / args.dataset
    info = load_info(data, args.dataset)
    x_train, y_train = load_split(data, "train")
    x_test, y_test = load_split(data, "test")
    p = params({"base.dataset": args.dataset, "evaluator.device": "cpu", "evaluate.device": "cpu",
                "train.device": "cpu"})
    s = Settings.of(p.evaluate, seed=p.base.seed, device="cpu")
    n = p.evaluate.n
    fresh_idx = np.sort(np.random.default_rng([p.base.seed, 1]).choice(len(x_train), n, replace=False))
    fresh, fresh_labels = x_train[fresh_idx], y_train[fresh_idx]  # the floor's images

    judges, report = {}, {"dataset": args.dataset, "n": n, "disturbances": {}, "generators": {}}
    for kind in ("classifier", "self-supervised"):
        t = time.perf_counter()
        r = build_evaluator(x_train, y_train, x_test, y_test, kind=kind, cfg=p.evaluator, floor_n=n,
                            settings=s, device=torch.device("cpu"), progress=False)
        judges[kind] = r
        print(f"{kind}: judge in {time.perf_counter() - t:.0f} s, floor fid {r.metrics['floor']['fid']:.4g}",
              flush=True)

        def fid(images, r=r):
            return fid_from_stats(r.reference.mu, r.reference.sigma,
                                  *feature_stats(extract(r.net, images, torch.device("cpu")).features))

        clean = fid(fresh)
        curves = {k: [clean] + [fid(disturb(fresh, k, lv, seed=1)) for lv in lvs]
                  for k, lvs in LEVELS.items()}
        curves["mode_dropping"] = [clean] + [fid(drop_modes(fresh, fresh_labels, keep, n, seed=1))
                                             for keep in (9, 7, 5, 3)]
        report["disturbances"][kind] = {
            k: {"fid": c, "monotone": bool(all(a < b for a, b in zip(c, c[1:], strict=False)))}
            for k, c in curves.items()}
        print(kind, {k: [round(v, 2) for v in c] for k, c in curves.items()}, flush=True)
    report["levels"] = {**LEVELS, "mode_dropping": [9, 7, 5, 3]}

    K = len(info["classes"])
    for name, overrides, kimgs in RUNS:
        t = time.perf_counter()
        got = snapshots(params({"base.dataset": args.dataset, "train.device": "cpu", **overrides}),
                        x_train, y_train, K, kimgs, content_hash(info))
        print(f"{name}: trained to {max(kimgs)} kimg in {time.perf_counter() - t:.0f} s", flush=True)
        for kimg, G in sorted(got.items()):
            images = generate(G, n, seed=p.base.seed, batch_size=500, device="cpu")
            row = {}
            for kind, r in judges.items():
                f = extract(r.net, images, torch.device("cpu")).features
                row[kind] = fid_from_stats(r.reference.mu, r.reference.sigma, *feature_stats(f)) / \
                    r.metrics["floor"]["fid"]
            report["generators"][f"{name}@{kimg}kimg"] = row
            print(f"  {name}@{kimg} kimg: fid_ratio {row}", flush=True)

    from scipy.stats import spearmanr

    rows = report["generators"].values()
    rho = spearmanr([r["classifier"] for r in rows], [r["self-supervised"] for r in rows]).statistic
    report["spearman"] = float(rho)
    report["seconds"] = round(time.perf_counter() - t0)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"{args.dataset}: Spearman {rho:.3f} over {len(rows)} generators; all disturbance curves "
          f"monotone: {all(v['monotone'] for d in report['disturbances'].values() for v in d.values())} "
          f"({report['seconds']} s)")


if __name__ == "__main__":
    main()
