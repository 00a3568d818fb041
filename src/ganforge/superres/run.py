"""The super-resolution stages' work as library code (stages/superres_*.py are thin Typer wrappers).

    judge(...)     the set's judge: a classifier (digits) or SimCLR on HR crops (photos), the reference
                   features of the test patches and the real-data floor
    train(...)     stage psnr (L1) or gan (from the psnr model): the task object through the one engine,
                   checkpoints, signals, MLflow, the model file, the registered model
    upscale(...)   every test image from its LR version: bicubic, psnr and gan models
    evaluate(...)  the paired scores, judge FID and fid_ratio (and the digits' accuracy), the table, the
                   perception-distortion plot, the crops picture

Paths: data/superres/<set>, models/superres/<set>-{judge,psnr,gan}.pt, results/superres/<set>/<stage>/,
checkpoints-superres/<set>-<stage>/. Every check of the params and the data happens before any work.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch

from ganforge.errors import ConfigError, GanforgeError
from ganforge.io import atomic_save_npz, atomic_write_bytes, atomic_write_json, atomic_write_text

EXPERIMENT = "ganforge-superres"  # MLflow: apart from the generators' runs (make compare ranks those)
METHODS = ("bicubic", "psnr", "gan")  # the table's rows, in order
STAGES = ("psnr", "gan")
BATCH = 256  # images of one size upscaled together (digits)
TILE = 128  # LR pixels per tile side when upscaling a photo (memory; the output does not depend on it)


class Paths:
    """Where set `name`'s files live (relative to the project root, as dvc.yaml names them)."""

    def __init__(self, name: str):
        self.name = name
        self.data = Path("data/superres") / name
        self.judge_model = Path("models/superres") / f"{name}-judge.pt"
        self.judge_results = Path("results/superres") / name / "judge"
        self.upscaled = Path("results/superres") / name / "upscaled.npz"
        self.evaluate = Path("results/superres") / name / "evaluate"

    def model(self, stage: str) -> Path:
        return Path("models/superres") / f"{self.name}-{stage}.pt"

    def results(self, stage: str) -> Path:
        return Path("results/superres") / self.name / stage

    def checkpoints(self, stage: str) -> Path:
        return Path("checkpoints-superres") / f"{self.name}-{stage}"


def set_of(p, name: str):
    """superres.sets[name], or a ConfigError naming the sets there are."""
    if name not in p.superres.sets:
        raise ConfigError(f"--set {name!r}: superres.sets has {', '.join(p.superres.sets)}")
    return p.superres.sets[name]


# --- data ----------------------------------------------------------------------------------------
def load_images(data_dir: Path, split: str) -> tuple[list[str], list[np.ndarray], np.ndarray | None]:
    """(names, uint8 [C, H, W] images, int64 labels or None) of one split of a prepared set (photos or any
    [N, C, H, W] data set)."""
    from ganforge.data.prepared import load_info, load_split

    info = load_info(data_dir)
    if info.get("kind") == "photos":
        from ganforge.data.photos import load_photos

        photos = load_photos(data_dir, split)
        return [n for n, _ in photos], [x for _, x in photos], None
    x, y = load_split(data_dir, split)
    return [f"{i:05d}" for i in range(len(x))], list(x), (y if len(info.get("classes", [])) > 1 else None)


def check_set(p, name: str, data_dir: Path) -> None:
    """The set's params against its data, at once: a ConfigError listing every problem."""
    from ganforge.data.prepared import load_info

    s, scale = p.superres.sets[name], p.superres.scale
    info = load_info(data_dir, s.dataset)
    problems = []
    if s.crop % scale:
        problems.append(f"superres.sets.{name}.crop {s.crop} is not a multiple of the scale {scale}")
    sides = _sides(info)
    if sides and s.crop > min(sides):
        problems.append(f"superres.sets.{name}.crop {s.crop} is larger than the smallest train image "
                        f"({min(sides)} px)")
    if s.judge.kind == "classifier":
        if len(info.get("classes", [])) < 2:
            problems.append(f"superres.sets.{name}.judge.kind classifier: {s.dataset} has no classes (use "
                            "self-supervised)")
        if sides and (len(set(sides)) > 1 or s.judge.crop != sides[0]):
            problems.append(f"superres.sets.{name}.judge.crop: a classifier judges whole images "
                            f"({sides[0]} px): set it to that")
    elif s.judge.self_supervised is None:
        problems.append(f"superres.sets.{name}.judge.self_supervised: the views of the self-supervised "
                        "judge are needed")
    if sides and s.judge.crop > min(sides):
        problems.append(f"superres.sets.{name}.judge.crop {s.judge.crop} is larger than the smallest "
                        f"image ({min(sides)} px)")
    if (s.judge.crop // scale) < 1 or s.judge.crop % scale:
        problems.append(f"superres.sets.{name}.judge.crop {s.judge.crop} is not a multiple of the scale")
    if problems:
        raise ConfigError("invalid params for super-resolution:\n  " + "\n  ".join(problems)
                          if len(problems) > 1 else problems[0])


def _sides(info: dict) -> list[int]:
    """Every train and test image's sides (photos: per photo; other data: the one shape)."""
    if info.get("kind") == "photos":
        return [side for ph in info["photos"].values() for side in ph["shape"][1:]]
    return list(info["shape"][1:]) if info.get("shape") else []


def data_hash(data_dir: Path) -> str:
    from ganforge.data.prepared import content_hash, load_info

    return content_hash(load_info(data_dir))


# --- the judge -----------------------------------------------------------------------------------
def patches(images: list[np.ndarray], side: int, offset: int = 0) -> np.ndarray:
    """The judged patches: the whole images when they are `side` px, else a grid of crops `offset` px in."""
    from ganforge.superres.crops import grid_crops

    if whole(images, side):
        return np.stack(images)
    return grid_crops(images, side, offset)


def whole(images: list[np.ndarray], side: int) -> bool:
    return all(x.shape[1:] == (side, side) for x in images)


def judge(p, name: str, data_dir: Path, model: Path, results: Path, device, progress: bool = True) -> dict:
    """Train the set's judge; write model, results/reference.npz and metrics.json (the floor)."""
    from ganforge.metrics import Reference, save_evaluator
    from ganforge.metrics.evaluator import Evaluator, accuracy, extract, train_evaluator
    from ganforge.metrics.ssl import train_ssl
    from ganforge.superres.crops import CropSampler
    from ganforge.train.engine import stream_seed

    check_set(p, name, data_dir)
    s, seed, j = p.superres.sets[name], p.base.seed, p.superres.sets[name].judge
    _, train, y_train = load_images(data_dir, "train")
    _, test, y_test = load_images(data_dir, "test")
    test = test[: s.test_n]
    if j.kind == "classifier":
        x = np.stack(train)[: j.n]
        net = train_evaluator(x, y_train[: j.n], int(y_train.max()) + 1, j.feature_dim, j.epochs,
                              j.batch_size, j.lr, seed, device, progress)
    else:
        crops = CropSampler(train, j.crop, False, "cpu").draw(
            j.n, torch.Generator().manual_seed(stream_seed(seed, "superres/judge"))).numpy()
        net = train_ssl(Evaluator(crops.shape[1], j.crop, 0, j.feature_dim, "self-supervised"), crops,
                        j.self_supervised, batch_size=j.batch_size, lr=j.lr, seed=seed, device=device,
                        progress=progress)
    ref_fs = extract(net, patches(test, j.crop), device)
    ref = Reference.of(ref_fs)
    # the real-data floor: other real images of what the reference shows. Whole images (digits): as many
    # train images; crops of a few photos: the test photos' crops on the grid shifted by half a patch (the
    # train photos show other things, and that difference would swamp what upscaling changes)
    real = (np.stack(train)[: len(test)] if whole(train, j.crop) and len(train) >= len(test)
            else patches(test, j.crop, offset=j.crop // 2))
    floor = patch_fid(ref, extract(net, real, device).features)
    metrics = {"kind": j.kind, "patches": len(ref_fs.features), "patch_side": j.crop, "floor": {"fid": floor}}
    if j.kind == "classifier":
        metrics["accuracy"] = accuracy(ref_fs, y_test[: s.test_n])
    save_evaluator(model, net, meta={"set": name, "dataset": s.dataset, "data_hash": data_hash(data_dir)})
    ref.save(results / "reference.npz")
    atomic_write_json(results / "metrics.json", metrics)
    return metrics


def patch_fid(ref, features: np.ndarray) -> float:
    from ganforge.metrics.fid import feature_stats, fid_from_stats

    return float(fid_from_stats(ref.mu, ref.sigma, *feature_stats(features)))


# --- training ------------------------------------------------------------------------------------
def code_fingerprint() -> str:
    """The generation trainer's code hash (engine, losses, nets) plus the super-resolution code and task: a
    checkpoint of other code is not resumed."""
    from ganforge.train.run import code_fingerprint as engine_code

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(engine_code().encode())
    for f in [*sorted((package / "superres").glob("*.py")), package / "tasks/superres.py"]:
        digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def train(p, name: str, stage: str, *, data_dir: Path, model: Path, results: Path, checkpoints: Path,
          judge_model: Path, init_model: Path | None, device) -> dict:
    """Stage psnr or gan of set `name`: returns the model file's meta."""
    from ganforge.metrics import load_evaluator
    from ganforge.sampling import png_bytes
    from ganforge.superres.nets import load_sr, save_sr
    from ganforge.tasks.superres import SuperResolution
    from ganforge.tracking.serving import log_sr_model
    from ganforge.tracking.training import RunSpec, train_tracked
    from ganforge.train.fast import FastPath
    from ganforge.train.history import history_tsv

    assert stage in STAGES, stage
    check_set(p, name, data_dir)
    sr, s, seed = p.superres, p.superres.sets[name], p.base.seed
    t = s.psnr if stage == "psnr" else s.gan
    _, images, _ = load_images(data_dir, "train")
    init, judge_net, init_sha = None, None, None
    if stage == "gan":  # ESRGAN's second stage starts from the PSNR model and needs the perceptual space
        G0, meta0 = load_sr(init_model)
        if G0.config() != {"channels": images[0].shape[0], "scale": sr.scale, "blocks": s.blocks,
                           "width": s.width}:
            raise ConfigError(f"{init_model} is a {G0.config()} network, but superres.sets.{name} asks for "
                              f"blocks {s.blocks}, width {s.width}, scale {sr.scale}: rerun its psnr stage")
        init, init_sha = G0.state_dict(), file_sha256(init_model)
        judge_net = load_evaluator(judge_model, device)[0]
    task = SuperResolution(s, stage, images, scale=sr.scale, seed=seed, device=device, judge=judge_net,
                           init=init, fast_path=FastPath.choose("off", device))
    dhash = data_hash(data_dir)
    # this stage's settings but its length: a longer run continues the checkpoint
    own = s.model_dump(exclude={"judge", "test_n", "gan" if stage == "psnr" else "psnr"})
    own[stage].pop("kimg")
    config = {"seed": seed, "data_hash": dhash, "device": torch.device(device).type, "stage": stage,
              "scale": sr.scale, "set": own, "init": init_sha,
              "judge": file_sha256(judge_model) if stage == "gan" else None, "code": code_fingerprint()}
    run = RunSpec({"base": {"seed": seed}, "superres": {"scale": sr.scale, "set": name, "stage": stage,
                                                        **own, stage: t.model_dump()}},
                  EXPERIMENT, f"superres-{name}-{stage}-{t.kimg:g}kimg",
                  {"dataset": s.dataset, "dataset_hash": dhash, "task": "superres", "superres.set": name,
                   "superres.stage": stage})
    tracked = train_tracked(
        task, steps=math.ceil(t.kimg * 1000 / t.batch_size), config=config,
        engine={"ema_decay": s.ema, "lr_decay": "none", "fast_path": task.fast_path,
                "log_every": sr.log_every, "image_every": sr.image_every, "ckpt_every": sr.ckpt_every},
        checkpoints=checkpoints, results=results, run=run, picture_key="sr_crops",
        announce=f"{name} {stage}: {len(images)} train images, device {device}")
    result, mlrun = tracked.result, tracked.mlrun
    G = result.ema if result.ema is not None else result.nets["G"]
    meta_out = {"set": name, "stage": stage, "dataset": s.dataset, "data_hash": dhash, "scale": sr.scale,
                "ema": result.ema is not None, "trained_steps": result.step, "trained_kimg": result.kimg,
                "seed": seed, "mlflow_run_id": mlrun.run_id,
                **({"init_sha256": init_sha} if init_sha else {})}
    save_sr(model, G.float().to(memory_format=torch.contiguous_format), meta_out)
    atomic_write_text(results / "losses.tsv", history_tsv(result.history))
    atomic_write_bytes(results / "crops.png", png_bytes(result.grid))
    tracked.log.flush(wait_seconds=60)
    version = log_sr_model(mlrun, model, name, stage)
    tracked.finish()
    print(f"trained {result.kimg:g} kimg ({result.step} steps); wrote {model} (version {version} of "
          f"ganforge-{name}-sr)")
    return meta_out


# --- upscaling and evaluation --------------------------------------------------------------------
def lr_images(hr: list[np.ndarray], scale: int) -> list[np.ndarray]:
    """The LR image of each HR one (degrade.downscale), uint8 [C, H / scale, W / scale]."""
    from ganforge.superres.degrade import downscale

    return [downscale(torch.from_numpy(np.ascontiguousarray(x))[None], scale)[0].numpy() for x in hr]


def upscale(p, name: str, *, data_dir: Path, models: dict[str, Path], out: Path, device,
            progress: bool = True) -> None:
    """Every test image (the first test_n) from its LR image by each method -> out (npz: names, and per
    method one stacked array when the sizes agree, else one array per image as <method>/<name>)."""
    from ganforge.metrics.evaluator import progress_bar
    from ganforge.superres.degrade import bicubic, to_uint8
    from ganforge.superres.nets import load_sr
    from ganforge.superres.tiles import upscale as tiled

    s, scale = p.superres.sets[name], p.superres.scale
    check_set(p, name, data_dir)
    names, hr, _ = load_images(data_dir, "test")
    names, hr = names[: s.test_n], hr[: s.test_n]
    lr = lr_images(hr, scale)
    nets, dhash = {}, data_hash(data_dir)
    for method, path in models.items():
        nets[method], meta = load_sr(path, device)
        if meta.get("data_hash") != dhash or nets[method].scale != scale:
            raise GanforgeError(f"{path} was trained on other data or for another scale than "
                                f"superres.sets.{name}: rerun its training stage")
    out_arrays: dict[str, np.ndarray] = {"names": np.array(names)}
    same = len({x.shape for x in hr}) == 1
    step = BATCH if same and max(hr[0].shape[1:]) <= 64 else 1  # small images of one size: in batches
    with progress_bar(progress, f"upscaling {name}", len(METHODS) * len(lr)) as advance:
        for method in METHODS:
            ups = []
            for i in range(0, len(lr), step):
                batch = torch.from_numpy(np.stack(lr[i : i + step])).to(device) / 255
                if method == "bicubic":
                    ups += list(to_uint8(bicubic(batch, scale)).cpu().numpy())
                elif step > 1:
                    with torch.no_grad():
                        ups += list(to_uint8(nets[method](batch)).cpu().numpy())
                else:  # one image of any size: in seam-free tiles
                    ups.append(tiled(nets[method], lr[i], tile=TILE, device=device))
                advance(len(batch))
            if same:
                out_arrays[method] = np.stack(ups)
            else:
                out_arrays.update({f"{method}/{n}": u for n, u in zip(names, ups, strict=True)})
    atomic_save_npz(out, **out_arrays)


def read_upscaled(path: Path, names: list[str]) -> dict[str, list[np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        if list(z["names"]) != list(names):
            raise GanforgeError(f"{path} holds other test images than the data: rerun the upscale stage")
        return {m: (list(z[m]) if m in z.files else [z[f"{m}/{n}"] for n in names]) for m in METHODS}


def evaluate(p, name: str, *, data_dir: Path, upscaled: Path, judge_model: Path, judge_results: Path,
             out: Path, device) -> dict:
    """The table of the methods (bicubic, psnr, gan): metrics.json, table.tsv, perception_distortion.tsv
    and .png, crops.png in `out`; returns the metrics."""
    from ganforge.metrics import Reference, load_evaluator, load_evaluator_metrics
    from ganforge.metrics.evaluator import extract
    from ganforge.sampling import png_bytes
    from ganforge.superres.plot import crops_picture, perception_distortion
    from ganforge.superres.scores import paired_scores

    s, scale = p.superres.sets[name], p.superres.scale
    check_set(p, name, data_dir)
    names, hr, labels = load_images(data_dir, "test")
    names, hr = names[: s.test_n], hr[: s.test_n]
    labels = labels[: s.test_n] if labels is not None else None
    ups = read_upscaled(upscaled, names)
    net, _ = load_evaluator(judge_model, device)
    ref = Reference.load(judge_results / "reference.npz")
    floor = float(load_evaluator_metrics(judge_results / "metrics.json")["floor"]["fid"])
    table = {}
    for method in METHODS:
        scores = [paired_scores(u, h, scale) for u, h in zip(ups[method], hr, strict=True)]
        row = {k: float(np.mean([sc[k] for sc in scores])) for k in scores[0]}
        fs = extract(net, patches(ups[method], s.judge.crop), device)
        row["fid"] = patch_fid(ref, fs.features)
        row["fid_ratio"] = row["fid"] / floor if floor > 0 else float("inf")
        if labels is not None and net.kind == "classifier":
            row["accuracy"] = float((fs.probs.argmax(1) == labels).mean())
        table[method] = row
    hr_fs = extract(net, patches(hr, s.judge.crop), device)
    if labels is not None and net.kind == "classifier":
        table["hr"] = {"accuracy": float((hr_fs.probs.argmax(1) == labels).mean())}
    metrics = {"set": name, "images": len(hr), "scale": scale, "floor_fid": floor,
               "conventions": "PSNR/SSIM on BT.601 Y (skimage rgb2ycbcr), data range 255, border crop "
                              f"{scale} px, SSIM Gaussian sigma 1.5; psnr_rgb on RGB, same crop; means over "
                              "images; fid: judge features of HR-side patches against the HR test patches; "
                              "fid_ratio = fid / the judge's real floor (other real patches of the same test "
                              "photos: the grid shifted by half a patch; whole images: as many train images)",
               **{m: table[m] for m in table}}
    atomic_write_json(out / "metrics.json", metrics)
    cols = ["psnr_y", "ssim_y", "psnr_rgb", "fid", "fid_ratio", *(["accuracy"] if "accuracy" in
                                                                   table["bicubic"] else [])]
    atomic_write_text(out / "table.tsv", "\t".join(["method", *cols]) + "\n" + "".join(
        "\t".join([m, *(f"{table[m][c]:.4f}" for c in cols)]) + "\n" for m in METHODS))
    atomic_write_text(out / "perception_distortion.tsv", "method\tpsnr_y\tfid_ratio\n" + "".join(
        f"{m}\t{table[m]['psnr_y']:.4f}\t{table[m]['fid_ratio']:.4f}\n" for m in METHODS))
    atomic_write_bytes(out / "perception_distortion.png", perception_distortion(table, METHODS, name))
    lr = lr_images(hr, scale)
    atomic_write_bytes(out / "crops.png", png_bytes(crops_picture(lr, ups, hr, scale, METHODS)))
    return metrics


def upscale_file(image: Path, out: Path, model: Path, *, scale: int | None, tile: int, overlap: int | None,
                 reference: Path | None) -> str:
    """One image file upscaled by an SR model file -> out (PNG); returns what to say. Every check (the
    file, the scale, the reference's size, the tiles) comes before anything is written."""
    from ganforge.io import read_png
    from ganforge.sampling import png_bytes
    from ganforge.superres.degrade import bicubic, to_uint8
    from ganforge.superres.nets import load_sr
    from ganforge.superres.scores import paired_scores
    from ganforge.superres.tiles import upscale as tiled

    net, _ = load_sr(model)
    if scale is not None and scale != net.scale:
        raise ConfigError(f"--scale {scale}: {model} was trained for x{net.scale} only (train a model for "
                          f"x{scale}: superres.scale)")
    lr = read_png(image, "--image")
    if lr.shape[0] == 3 and net.channels == 1 and (lr[0] == lr[1]).all() and (lr[1] == lr[2]).all():
        lr = lr[:1]  # a grey image saved as RGB
    if lr.shape[0] != net.channels:
        raise ConfigError(f"--image {image} has {lr.shape[0]} channel(s), {model} upscales {net.channels}")
    hr = None
    if reference is not None:
        hr = read_png(reference, "--reference")[: net.channels]
        want = [lr.shape[1] * net.scale, lr.shape[2] * net.scale]
        if list(hr.shape[1:]) != want or hr.shape[0] != net.channels:
            raise ConfigError(f"--reference {reference} is {hr.shape[2]} x {hr.shape[1]} px with "
                              f"{hr.shape[0]} channel(s); the output is {want[1]} x {want[0]} with "
                              f"{net.channels}: the LR image must be the reference downscaled x{net.scale}")
    sr = tiled(net, lr, tile=tile, overlap=overlap)
    atomic_write_bytes(out, png_bytes(sr[0] if sr.shape[0] == 1 else sr.transpose(1, 2, 0)))
    said = f"{image} ({lr.shape[2]} x {lr.shape[1]}) -> {out} ({sr.shape[2]} x {sr.shape[1]}, x{net.scale})"
    if hr is not None:
        bic = to_uint8(bicubic(torch.from_numpy(lr)[None] / 255, net.scale))[0].numpy()
        for what, x in (("model", sr), ("bicubic", bic)):
            sc = paired_scores(x, hr, net.scale)
            said += f"\n  {what:8s} psnr_y {sc['psnr_y']:.2f} dB  ssim_y {sc['ssim_y']:.4f}"
    return said
