"""Time to quality: train recipes for the same wall-clock budget, one after the other in this process, and
score each at the end with the evaluate stage's metrics (issue 12).

    .venv/bin/python bench/quality_budget.py --seconds 150 --recipe seed-dcgan \
        --recipe dcgan32-b64-lr5e-4-hinge-sn --out bench/quality_budget.json

A recipe is a name from bench/recipes.py (its `-S key=value` overrides of params.yaml) or `key=value,...`
overrides given inline. Each run is the training engine as the train stage sets it up (params.yaml ->
ganforge.train.validate, build, train), with no MLflow and no grids, stopped after `--seconds` of
*training* (the curve's evaluations are timed apart and not charged), then its G_ema is scored on `--n`
images (default evaluate.n, so fid_ratio divides by the evaluator's real-data floor measured on as many
images, exactly as the evaluate stage does). Along the way a curve: FID/precision/recall on `--curve-n`
images every `--curve-kimg` (small n biases FID upwards; the curve compares recipes with each other, the
final score compares with the pipeline).

Wall-clock is only as good as the machine is idle: the report records the load average before and after,
and images/s, so a busy machine shows. A benchmark, not a test: nothing here asserts quality.
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import typer
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/recipes.py: the named recipes
from recipes import RECIPES  # noqa: E402

app = typer.Typer(add_completion=False, help=__doc__)


def overridden(raw: dict, overrides: list[str]) -> dict:
    """params.yaml's mapping with `a.b.c=value` overrides applied (values read as YAML, as dvc -S does)."""
    import copy

    out = copy.deepcopy(raw)
    for kv in overrides:
        key, _, value = kv.partition("=")
        *parents, leaf = key.split(".")
        node = out
        for k in parents:
            node = node[k]
        node[leaf] = yaml.safe_load(value)
    return out


def run_recipe(name: str, overrides: list[str], raw: dict, *, seconds: float, n: int, curve_n: int,
               curve_kimg: float, device) -> dict:
    import copy

    import numpy as np
    import torch

    from ganforge.config import parse_params
    from ganforge.data.prepared import content_hash, load_info, load_split
    from ganforge.metrics import Reference, Settings, in_training_evaluation, load_evaluator
    from ganforge.metrics.suite import load_evaluator_metrics
    from ganforge.train import Stopped, build, train, validate
    from ganforge.train.run import steps_of

    # kimg only bounds the run (the budget stops it first); it also sets a linear lr decay's horizon. The
    # curve's evaluations are the bench's own (below), whatever the recipe's train.eval says.
    p = parse_params(overridden(raw, [*overrides, "train.kimg=10000", "train.eval.every_kimg=0"]),
                     f"recipe {name}", ("base", "train", "evaluate"))
    data = Path("data") / p.base.dataset
    info = load_info(data, p.base.dataset)
    x_train, y_train = load_split(data, "train")  # uint8 [N, C, H, W], int64 [N]
    for warning in validate(p, info, 1):  # the train stage's checks of the params against the data
        print(f"  {name}: warning: {warning}", flush=True)
    built = build(p, x_train, y_train, len(info.get("classes", [])), data_hash=content_hash(info),
                  device=device)
    img_per_step = steps_of(p.train)[1]
    every = max(1, round(curve_kimg * 1000 / img_per_step))
    engine = {**built.engine, "eval_every": every, "log_every": every, "image_every": 10**9,
              "ckpt_every": 10**9}
    judge = in_training_evaluation(load_evaluator(Path("models/evaluator.pt"), device)[0],
                                   Reference.load(Path("results/evaluator/reference.npz")),
                                   Settings.of(p.evaluate, seed=p.base.seed, device=device), seed=p.base.seed)
    floor_fid = float(load_evaluator_metrics(Path("results/evaluator/metrics.json"))["floor"]["fid"])

    clock = {"start": time.perf_counter(), "eval_seconds": 0.0, "steps": 0}

    def train_seconds() -> float:
        return time.perf_counter() - clock["start"] - clock["eval_seconds"]

    curve: list[dict] = []

    def evaluate(G) -> dict:  # the curve: timed apart, so it costs the recipe nothing
        t0, at = time.perf_counter(), train_seconds()
        m = judge(G, curve_n)
        curve.append({"train_seconds": round(at, 1), "step": clock["steps"],
                      "kimg": clock["steps"] * img_per_step / 1000,
                      **{k: m[k] for k in ("fid", "precision", "recall")}})
        print(f"  {name}: {at:6.0f} s  kimg {curve[-1]['kimg']:7.1f}  fid {m['fid']:7.1f}  "
              f"precision {m['precision']:.3f}  recall {m['recall']:.3f}", flush=True)
        clock["eval_seconds"] += time.perf_counter() - t0
        return m

    def stop() -> str | None:
        # The engine's graceful stop is exactly what a budget needs: finish this step, checkpoint it, raise
        # Stopped. The checkpoint then holds the G_ema to score (the signal name only labels the stop).
        clock["steps"] += 1
        return "SIGINT" if train_seconds() >= seconds else None

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "train.pt"
        try:
            train(built.task, **engine, evaluate=evaluate, checkpoint_path=ckpt, stop=stop, progress=False)
        except Stopped:
            pass
        trained = train_seconds()
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    G = copy.deepcopy(built.task.G)  # the task's G (its EMA is a copy of it): the architecture to load into
    G.load_state_dict(state["ema"] if state["ema"] is not None else state["nets"]["G"])
    final = judge(G.to(device).eval(), n)
    steps = state["step"]
    return {"recipe": name, "overrides": overrides, "train_seconds": round(trained, 1), "steps": steps,
            "kimg": steps * img_per_step / 1000, "img_per_s": steps * img_per_step / trained, "n": n,
            "fid": final["fid"], "fid_ratio": final["fid"] / floor_fid, "precision": final["precision"],
            "recall": final["recall"], "coverage": final["coverage"], "curve": curve,
            "finite": bool(np.isfinite(final["fid"]))}


@app.command()
def main(
    recipe: list[str] = typer.Option(..., help="a recipe name from bench/recipes.py, or inline overrides "
                                     "`train.loss=hinge,train.batch_size=64` (repeatable)"),
    seconds: float = typer.Option(150.0, min=1, help="training wall-clock per recipe (evaluations excluded)"),
    n: int = typer.Option(None, min=100, help="images of the final score [default: params evaluate.n]"),
    curve_n: int = typer.Option(2000, min=100, help="images per point of the curve"),
    curve_kimg: float = typer.Option(20.0, min=0.1, help="kimg between the curve's points"),
    params: Path = typer.Option(Path("params.yaml"), help="the params the recipes override"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | mps"),
    out: Path = typer.Option(Path("bench/quality_budget.json"), help="where the JSON report goes"),
) -> None:
    """Train each recipe for the same budget, score it, print a table and write the JSON report."""
    from ganforge.cli import user_errors

    with user_errors():
        from ganforge.config import load_params
        from ganforge.device import resolve_device
        from ganforge.errors import ConfigError
        from ganforge.io import atomic_write_json

        raw = yaml.safe_load(params.read_text())
        n = n or load_params(params, "evaluate").evaluate.n
        dev = resolve_device(device)
        runs = []
        load_before = os.getloadavg()
        for r in recipe:
            name, overrides = (r, RECIPES[r]) if r in RECIPES else (r, r.split(","))
            if r not in RECIPES and not all("=" in kv for kv in overrides):
                raise ConfigError(f"--recipe {r}: neither a recipe of bench/recipes.py "
                                  f"({', '.join(RECIPES)}) nor key=value overrides")
            print(f"== {name}: {seconds:.0f} s of training", flush=True)
            runs.append(run_recipe(name, overrides, raw, seconds=seconds, n=n, curve_n=curve_n,
                                   curve_kimg=curve_kimg, device=dev))
        report = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "command": " ".join([Path(sys.executable).name, *sys.argv]), "seconds": seconds,
                  "threads": __import__("torch").get_num_threads(), "load_avg_before": load_before,
                  "load_avg_after": os.getloadavg(), "runs": runs}
        atomic_write_json(out, report)
        print(f"\n| recipe | train s | steps | kimg | img/s | fid_ratio (n={n}) | precision | recall |\n"
              "|---|---|---|---|---|---|---|---|")
        for r in runs:
            print(f"| {r['recipe']} | {r['train_seconds']:.0f} | {r['steps']} | {r['kimg']:.1f} | "
                  f"{r['img_per_s']:.0f} | {r['fid_ratio']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} |")
        print(f"wrote {out}")


if __name__ == "__main__":
    app()
