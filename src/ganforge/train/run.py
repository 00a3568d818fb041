"""The train stage's work as library code: validate once, build the task, run the engine, write the outputs.

    validate(p, info, nproc)    every bad-params case, before anything starts (before a torchrun launch too)
    trajectory_config(p, ...)   what a checkpoint must match: the validated train section, the data, the code
    build(p, x, y, ...)         the GAN object (tasks/generation.py) and the engine's settings
    run(p, ...)                 the whole stage: MLflow run, checkpoints, outputs, model registration

Below validate() there are plain asserts only: a bad value that reaches them is a bug, not a user error.
"""

from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ganforge.errors import ConfigError, GanforgeError
from ganforge.judges import judge_for
from ganforge.nets import get_architecture
from ganforge.nets.packing import check_batch
from ganforge.train.distributed import World
from ganforge.train.fast import FastPath

WAIT_FOR_STORE_SECONDS = 300  # at the end of training, how long to wait for a tracking store that is down


def validate(p, info: dict, nproc: int) -> list[str]:
    """Every check of the base and train sections against the data (info.json) and the number of
    processes, at once: a ConfigError (exit 2) listing every problem, one line each; else the warnings."""
    t, judge = p.train, judge_for(p.base.dataset)
    shape, classes = list(info.get("shape", [])), list(info.get("classes", []))
    problems = [] if shape or judge.data == "points" else [
        f"{p.base.dataset}'s info.json has no image shape: rerun the download stage (dvc repro download)"]
    try:
        resolution = 1 if judge.data == "points" else shape[-1] if shape else None
        get_architecture(t.arch.kind, resolution, judge.data)
    except ConfigError as e:
        problems.append(f"train.arch: {e}")
    if t.conditional and len(classes) < 2:
        problems.append(f"train.conditional: {p.base.dataset} has no labels ({len(classes)} class: a flat "
                        "image folder); arrange the images in one sub-folder per class, or set "
                        "train.conditional: false")
    if t.label_matching and not t.conditional:
        problems.append("train.label_matching: the class term reads the projection D's classes; it needs "
                        "train.conditional: true (or set train.label_matching: 0)")
    if t.conditional and t.pack > 1:  # a pack mixes samples of different classes: no one label to project
        problems.append("train.pack: PacGAN packing does not combine with train.conditional (a pack of "
                        "samples has no single class for the projection D); set train.pack: 1")
    if t.batch_size % nproc:
        problems.append(f"train.batch_size {t.batch_size} does not divide among {nproc} processes: the "
                        f"global batch is split evenly over them (use a multiple of {nproc}, or another "
                        "train.nproc)")
    else:
        try:
            check_batch(t.batch_size // nproc, t.pack, t.mbstd_group)  # D packs each rank's share
        except ConfigError as e:
            problems.append(str(e))
    if t.eval.every_kimg and not judge.in_training_fid:
        problems.append(f"train.eval.every_kimg: the in-training evaluation measures FID in the CNN judge's "
                        f"features, which {p.base.dataset} has not (set 0: the evaluate stage judges it)")
    if judge.data == "points" and t.augment:
        problems.append(f"train.augment: DiffAugment ({t.augment!r}) transforms images; the toy 2-D data "
                        "take none (\"\")")
    if judge.data == "points" and t.ada.enabled:
        problems.append("train.ada: adaptive augmentation transforms images; the toy 2-D data take none (set "
                        "train.ada.enabled: false)")
    if t.ada.enabled and len(shape) == 3 and shape[1] != shape[2]:
        problems.append(f"train.ada: the quarter turns need square images, and {p.base.dataset}'s are "
                        f"{shape[1]} x {shape[2]}")
    n_train = info.get("counts", {}).get("train")
    if t.limit_images is not None and n_train is not None and t.limit_images > n_train:
        problems.append(f"train.limit_images: {t.limit_images} is more than the {n_train} images of "
                        f"{p.base.dataset}'s train split (null = all of them)")
    if problems:
        raise ConfigError("invalid params for training:\n  " + "\n  ".join(problems) if len(problems) > 1
                          else problems[0])
    from ganforge.losses import constraint_warning

    warning = constraint_warning(t.loss.kind, t.reg.kind, t.spectral_norm.d)
    return [warning] if warning else []


def code_fingerprint() -> str:
    """Hash of the code that defines the trajectory (losses, augmentations, nets, tasks, train/). A checkpoint
    written by other code is not resumed: after a fix to the loss, `dvc repro` must not quietly continue the
    old run."""
    package = Path(__file__).resolve().parents[1]  # src/ganforge
    files = [*sorted(package.glob("losses/*.py")), package / "ada.py", package / "augment.py",
             *sorted(package.glob("nets/*.py")), package / "tasks/__init__.py",
             package / "tasks/generation.py", *sorted(package.glob("train/*.py"))]  # z -> image: its own task
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.relative_to(package)}\n".encode() + f.read_bytes())
    return digest.hexdigest()[:16]


def training_data_hash(info: dict, limit_images: int | None) -> str:
    """The data a run trains on as one short id (the MLflow runs' dataset_hash tag, the generator file's
    data_hash, a checkpoint's config): the prepared data's content hash, and with train.limit_images the
    number of train images kept, so a checkpoint of the full data is never resumed on the first 2,000 (nor
    the other way round), and runs on different shares of one data set never share a tag."""
    from ganforge.data.prepared import content_hash

    full = content_hash(info)
    if limit_images is None:
        return full
    return hashlib.sha256(f"{full}/train[:{limit_images}]".encode()).hexdigest()[:16]


def trajectory_config(p, data_hash: str, device: torch.device) -> dict:
    """What a checkpoint must match to be resumed: every validated train key but those a run may change
    (config.Train.NOT_TRAJECTORY), the seed, the data, the device type and the code."""
    train = p.train.model_dump(exclude=set(p.train.NOT_TRAJECTORY))
    return {"seed": p.base.seed, "data_hash": data_hash, "device": torch.device(device).type, "train": train,
            "code": code_fingerprint()}


@dataclass
class Built:
    task: object  # the GAN object (tasks.generation.ImageGeneration)
    engine: dict  # the engine's settings (train.engine.train's keyword arguments, minus the callbacks)


def steps_of(t) -> tuple[int, int]:
    """(steps of the run, real images per step) for the train section: kimg counts the images D sees."""
    img_per_step = t.batch_size * t.d_steps
    return math.ceil(t.kimg * 1000 / img_per_step), img_per_step


def build(p, x_train: np.ndarray, y_train: np.ndarray | None, num_classes: int, *, data_hash: str,
          device: torch.device, world: World | None = None) -> Built:
    """The GAN object and the engine's settings for validated params `p` on these data."""
    from ganforge.tasks.generation import ImageGeneration

    t = p.train
    world = world or World(device=torch.device(device))
    fast_path = FastPath.choose(t.fast, world.device)
    task = ImageGeneration(t, x_train, y_train, num_classes, seed=p.base.seed, fast_path=fast_path,
                           world=world)
    steps, img_per_step = steps_of(t)
    eval_every = max(1, round(t.eval.every_kimg * 1000 / img_per_step)) if t.eval.every_kimg else 0
    engine = dict(steps=steps, config=trajectory_config(p, data_hash, device),
                  ema_decay=t.ema.decay if t.ema.enabled else None, lr_decay=t.lr_decay, fast_path=fast_path,
                  log_every=t.log_every, image_every=t.image_every, ckpt_every=t.ckpt_every,
                  eval_every=eval_every, world=world)
    return Built(task=task, engine=engine)


def run(p, *, data: Path, model: Path, results: Path, checkpoints: Path, evaluator: Path,
        evaluator_results: Path, device: torch.device, world: World, effective_params: dict) -> None:
    """The train stage: the data, the run in MLflow, training with checkpoints and signals, the outputs
    (models/generator.pt, results/train/*), the model registration. Rank 0 alone tracks and writes; the
    other ranks train in step with it."""
    from ganforge.cli import GracefulStop
    from ganforge.data.prepared import load_info, load_split
    from ganforge.io import atomic_write_bytes, atomic_write_text
    from ganforge.nets import save_generator
    from ganforge.plane import extent_of, gif_bytes, walk_pictures
    from ganforge.sampling import (
        STYLE_PICTURES,
        interpolation,
        interpolation_pictures,
        png_bytes,
        style_based,
        style_pictures,
    )
    from ganforge.tasks.generation import PLANE_POINTS
    from ganforge.train.checkpoint import CHECKPOINT_FILE, load_checkpoint, remove_stale_temp_files
    from ganforge.train.engine import Stopped, train
    from ganforge.train.history import history_tsv

    cfg = p.train
    info = load_info(data, p.base.dataset)
    x_train, y_train = load_split(data, "train")  # uint8 [N, C, H, W] (or points), int64 [N]
    judge_for(p.base.dataset).check(x_train, f"{data}/train.npz")
    if cfg.limit_images is not None:  # a small-data run: the first N (validate() checked there are N)
        x_train, y_train = x_train[:cfg.limit_images], y_train[:cfg.limit_images]
    classes = list(info.get("classes", []))
    data_hash = training_data_hash(info, cfg.limit_images)
    built = build(p, x_train, y_train, len(classes), data_hash=data_hash, device=device, world=world)
    ckpt_path = checkpoints / CHECKPOINT_FILE
    if world.main:
        for stale in remove_stale_temp_files(ckpt_path):
            print(f"removed {stale}: a checkpoint write that a kill cut short")
    # rank 0 reads the checkpoint and hands it to the others (other nodes need not have the file)
    resume = cfg.resume == "auto" and world.main
    ckpt = world.from_main(load_checkpoint(ckpt_path, built.engine["config"]) if resume else None)
    if not world.main:  # the other ranks train in step with rank 0, which alone tracks and writes
        with GracefulStop() as stop:
            try:
                train(built.task, **built.engine, checkpoint_path=ckpt_path, resume=ckpt,
                      stop=lambda: stop.requested, progress=False)
            except Stopped as e:
                raise SystemExit(e.exit_code) from None  # rank 0 says what happened
        return

    from ganforge.metrics import Reference, Settings, in_training_evaluation, load_evaluator
    from ganforge.tracking.serving import log_generator_model
    from ganforge.tracking.spool import TrainingLog
    from ganforge.tracking.store import open_training_run, params_hash
    from ganforge.tracking.training import closed_on_failure

    evaluate = None  # train.eval: FID/precision/recall in the evaluator stage's features
    if built.engine["eval_every"]:
        judged = in_training_evaluation(load_evaluator(evaluator, device)[0],
                                        Reference.load(evaluator_results / "reference.npz"),
                                        Settings.of(p.evaluate, seed=p.base.seed, device=device),
                                        seed=p.base.seed)
        evaluate = lambda G: judged(G, cfg.eval.n)  # noqa: E731
    if cfg.resume == "never" and ckpt_path.exists():
        print(f"train.resume is never: training from step 0 ({ckpt_path} will be replaced)")
    run_params = {"base": p.base.model_dump(), "train": cfg.model_dump()}
    mlrun = open_training_run(run_params, ckpt["meta"] if ckpt else None, run_name=run_name(p),
                              tags={"dataset": p.base.dataset, "dataset_hash": data_hash,
                                    "world_size": str(world.size)})
    mlrun.log_dataset(p.base.dataset, data_hash, source=str(data.resolve()), context="train",
                      profile={"train_images": len(x_train), "shape": list(x_train.shape[1:])})
    meta = {"params_hash": params_hash(run_params), "mlflow_run_id": mlrun.run_id}
    print(f"device {device}, {world.size} process(es), {len(x_train)} train images, "
          f"MLflow run {mlrun.run_id} in {mlrun.client.tracking_uri}")
    mlrun.write_json(results / "run.json")
    # the merged params (params.yaml + the recipe) this run trained with, beside its results and in MLflow
    import yaml

    atomic_write_text(results / "params.yaml", yaml.safe_dump(effective_params, sort_keys=False))
    mlrun.log_artifact(results / "params.yaml")
    tracked = TrainingLog(mlrun, checkpoints)  # best effort: an outage spools, never stops training
    if ckpt:
        tracked.replay(ckpt["history"])  # reports the checkpoint holds but the store may have missed

    def log(step: int, stats: dict) -> None:
        tracked.metrics(step, stats)
        if not sys.stderr.isatty():  # no live progress bar: leave one line per report in the log
            print(f"step {step}  " + "  ".join(f"{k} {v:.4g}" for k, v in stats.items()), flush=True)

    points = built.task.points
    frames = []  # 2-D data: the GAN-Lab pictures of this process, for results/train/training.gif

    def log_grid(step: int, picture) -> None:
        tracked.image(step, "decision_surface" if points else "samples_fixed_z", picture)
        if points:
            frames.append(picture)

    # SIGTERM/SIGINT: finish the step, checkpoint it, then stop (the run KILLED; a failure: FAILED)
    with closed_on_failure(mlrun, tracked), GracefulStop() as stop:
        result = train(built.task, **built.engine, evaluate=evaluate, checkpoint_path=ckpt_path,
                       resume=ckpt, checkpoint_meta=meta, log=log, log_grid=log_grid,
                       stop=lambda: stop.requested, progress=sys.stderr.isatty())

    ema = result.ema is not None
    G_out = result.ema if ema else result.nets["G"]
    snapshot = {"step": result.step, "kimg": result.kimg}  # the last weights, unless evaluation chose
    if result.best is not None:
        G_out.load_state_dict(result.best["weights"])
        snapshot = {k: result.best[k] for k in ("step", "kimg", "fid")}
    save_generator(model, G_out, meta={
        "weights": "G_ema" if ema else "G", "ema": ema, "dataset": p.base.dataset, "data_hash": data_hash,
        "arch": cfg.arch.kind, "loss": cfg.loss.kind, "seed": p.base.seed, "trained_steps": result.step,
        "trained_kimg": result.kimg, **snapshot, "mlflow_run_id": mlrun.run_id,
        **({"classes": classes} if cfg.conditional else {})})  # class names: sample/evaluate check them
    mlrun.write_json(results / "run.json", snapshot={"best" if result.best else "last": snapshot})
    atomic_write_text(results / "eval.tsv", history_tsv(result.evals) if result.evals else "step\tfid\n")
    if result.best is not None:
        mlrun.set_tags({f"best.{k}": v for k, v in snapshot.items()})
        print(f"kept the snapshot with the best in-training FID: step {snapshot['step']} "
              f"({snapshot['kimg']:g} kimg), fid {snapshot['fid']:.4g}")
    atomic_write_text(results / "losses.tsv", history_tsv(result.history))
    atomic_write_bytes(results / "samples.png", png_bytes(result.grid))
    # latent walks of the generator file's G (slerp between seeds; conditional: classes); 2-D: the plane
    walks = interpolation(G_out.eval(), p.base.seed, device=device)
    real = x_train[:PLANE_POINTS]
    strip, gif = walk_pictures(walks, real, extent_of(real)) if points else interpolation_pictures(walks)
    atomic_write_bytes(results / "interpolation.png", png_bytes(strip))
    atomic_write_bytes(results / "interpolation.gif", gif)
    # a style-based G (stylegan2): its style-mixing figure and truncation strip (and none left over from
    # an earlier run's style-based G when it is not)
    styles = style_pictures(G_out.eval(), p.base.seed, device=device) if style_based(G_out) else {}
    for key in STYLE_PICTURES:
        if key in styles:
            atomic_write_bytes(results / f"{key}.png", png_bytes(styles[key]))
        else:
            (results / f"{key}.png").unlink(missing_ok=True)
    if frames:  # every image_every steps since this process started (a resumed run: since the resume)
        atomic_write_bytes(results / "training.gif", gif_bytes(frames))
        mlrun.log_artifact(results / "training.gif")
    if not tracked.flush(wait_seconds=WAIT_FOR_STORE_SECONDS):
        raise GanforgeError(f"training finished and {model} is written, but the tracking store has been "
                            f"unreachable for {WAIT_FOR_STORE_SECONDS} s: its points wait in "
                            f"{tracked.spool}; rerun `dvc repro` when it is back to send them and "
                            "register the model")
    if tracked.images_lost:
        print(f"warning: {tracked.images_lost} sample grid(s) could not be logged during an outage "
              f"(the last one is {results}/samples.png)")
    mlrun.log_image(strip, key="interpolation")
    for key, picture in styles.items():
        mlrun.log_image(picture, key=key)
    mlrun.log_artifact(results / "interpolation.gif")
    # a new version of ganforge-<dataset> in the model registry; evaluate decides if it becomes champion
    version = log_generator_model(mlrun, model, p.base.dataset)
    mlrun.finish("FINISHED")
    print(f"registered {model} as version {version} of ganforge-{p.base.dataset}")
    print(f"trained {result.kimg:g} kimg ({result.step} steps); wrote {model} and {results}/")


def run_name(p) -> str:
    """What the runs table shows: dataset, architecture, loss, length, then the DVC experiment if any."""
    import os

    name = f"{p.base.dataset}-{p.train.arch.kind}-{p.train.loss.kind}-{p.train.kimg:g}kimg"
    return f"{name}-{os.environ['DVC_EXP_NAME']}" if os.environ.get("DVC_EXP_NAME") else name
