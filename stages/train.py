"""DVC stage `train`: a GAN on the prepared data, tracked in MLflow, resumable from checkpoints/.

Writes models/generator.pt (G_ema when train.ema.enabled; with train.eval on, the snapshot with the best
in-training FID), results/train/{losses.tsv, eval.tsv, samples.png, run.json, params.yaml}. Rerunning after
an interruption resumes from checkpoints/train.pt when its config matches (train.resume: auto), or trains
from step 0 whatever the checkpoint holds (train.resume: never). With train.nproc > 1 it execs
`torchrun --nproc-per-node N` on this same command line: N processes train in step (DDP); rank 0 alone
tracks and writes. The work is ganforge.train.run; this file parses options and maps exit codes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from ganforge.cli import user_errors

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def main(
    params: Path = typer.Option(Path("params.yaml"), help="params file; reads base.seed, base.dataset, "
                                "base.recipe and the train section"),
    data: Path = typer.Option(..., help="prepared data directory (output of the download stage)"),
    model: Path = typer.Option(Path("models/generator.pt"), help="the generator file sample/evaluate read"),
    results: Path = typer.Option(Path("results/train"), help="directory for losses.tsv, eval.tsv, "
                                 "samples.png, interpolation.png, interpolation.gif, run.json, params.yaml"),
    checkpoints: Path = typer.Option(Path("checkpoints"), help="resumable checkpoints (persisted by DVC)"),
    evaluator: Path = typer.Option(Path("models/evaluator.pt"), help="the judge of the in-training "
                                   "evaluation (train.eval.every_kimg > 0)"),
    evaluator_results: Path = typer.Option(Path("results/evaluator"), help="its reference.npz"),
) -> None:
    """Train G and D; resume from CHECKPOINTS when the config matches, else start fresh. SIGTERM or Ctrl-C:
    the current step is finished and checkpointed, the MLflow run is marked KILLED, and a rerun resumes
    there (a second signal stops at once, keeping the previous checkpoint). Exit codes: 0 done, 1 training
    failed (e.g. diverged; the last good checkpoint is kept), 2 bad params or device (checked before any
    process starts, whatever train.nproc is), 130 Ctrl-C, 143 SIGTERM. With train.nproc > 1 this command
    replaces itself by torchrun running it in train.nproc processes (several nodes: torchrun's PET_*
    variables, see the README); torchrun then exits 1 when any process fails."""
    with user_errors():
        from ganforge.config import load_params
        from ganforge.data.prepared import load_info
        from ganforge.device import resolve_device
        from ganforge.train.distributed import exec_torchrun, join, launched, resolve_nproc
        from ganforge.train.run import run, validate

        p = load_params(params, "base", "train", "evaluate")  # bad params/device: exit 2 before heavy imports
        device = resolve_device(p.train.device)
        nproc = resolve_nproc(p.train.nproc, device)  # more than the visible GPUs: exit 2
        # every bad-params case exits 2 here, before a torchrun launch (and again in each launched process,
        # against the world size torchrun gives it: several nodes)
        world_size = int(os.environ["WORLD_SIZE"]) if launched() else nproc
        warnings = validate(p, load_info(data, p.base.dataset), world_size)
        if nproc > 1 and not launched():  # this same command in nproc processes under torchrun (no return)
            exec_torchrun(nproc, sys.argv)
        world = join(device)  # rank 0 of 1, or this process's rank in torchrun's process group
        for warning in warnings if world.main else ():
            print(f"warning: {warning}")
        run(p, data=data, model=model, results=results, checkpoints=checkpoints, evaluator=evaluator,
            evaluator_results=evaluator_results, device=device, world=world, effective_params=p.raw)


if __name__ == "__main__":
    app()
