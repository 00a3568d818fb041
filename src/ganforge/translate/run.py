"""The translation stages' work as library code (stages/translate_*.py are thin Typer wrappers).

    judge(...)      one judge per domain of a set (ganforge.judges.domain_judges: the classifier of its
                    labels, or of its registry entry's judged_on data set, else SimCLR), the reference
                    features of the domain's test images and its real-data floor
    train(...)      one model of translate.models: the task object (tasks/translation.py) through the one
                    engine, checkpoints, signals, MLflow, the model file, the registered model
    translate(...)  the test images of each source domain in each direction (CycleGAN: and back again)
    evaluate(...)   per direction, the model beside the identity baseline (the untranslated input): fid and
                    fid_ratio in the target domain's judge, label preservation or the share read as the
                    target domain's class, PSNR/SSIM against the true counterparts, cycle PSNR; the table
                    and the pictures

Paths: data/translate/<set>, models/translate/<set>-judge-{a,b}.pt, results/translate/<set>/judge/,
models/translate/<model>.pt, results/translate/<model>/{train/, translated.npz, evaluate/},
checkpoints-translate/<model>/. Every check of the params and the data happens before any work.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch

from ganforge.errors import ConfigError, GanforgeError
from ganforge.io import atomic_save_npz, atomic_write_bytes, atomic_write_json, atomic_write_text

EXPERIMENT = "ganforge-translate"  # MLflow: apart from the generators' runs (make compare ranks those)
DIRECTIONS = {"ab": ("a", "b"), "ba": ("b", "a")}  # direction -> (source, target) domain suffix
BATCH = 256  # images translated (and judged) together
PICTURE_ROWS = 8  # rows of each direction in evaluate's pictures


class SetPaths:
    def __init__(self, name: str):
        self.name = name
        self.data = Path("data/translate") / name
        self.judge_results = Path("results/translate") / name / "judge"

    def judge_model(self, suffix: str) -> Path:
        return Path("models/translate") / f"{self.name}-judge-{suffix}.pt"

    def reference(self, suffix: str) -> Path:
        return self.judge_results / f"reference-{suffix}.npz"


class ModelPaths:
    def __init__(self, name: str):
        self.name = name
        self.model = Path("models/translate") / f"{name}.pt"
        self.train = Path("results/translate") / name / "train"
        self.translated = Path("results/translate") / name / "translated.npz"
        self.evaluate = Path("results/translate") / name / "evaluate"
        self.checkpoints = Path("checkpoints-translate") / name


def set_of(p, name: str):
    if name not in p.translate.sets:
        raise ConfigError(f"--set {name!r}: translate.sets has {', '.join(p.translate.sets)}")
    return p.translate.sets[name]


def model_of(p, name: str):
    if name not in p.translate.models:
        raise ConfigError(f"--model {name!r}: translate.models has {', '.join(p.translate.models)}")
    return p.translate.models[name]


# --- data ----------------------------------------------------------------------------------------
def to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """uint8 [N, C, H, W] with `channels` channels: grey repeated, or colour to BT.601 luma (rounded)."""
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1 and channels == 3:
        return np.repeat(x, 3, axis=1)
    if x.shape[1] == 3 and channels == 1:
        luma = np.tensordot(np.array([0.299, 0.587, 0.114]), x.astype(np.float64), axes=([0], [1]))
        return np.clip(np.round(luma), 0, 255).astype(np.uint8)[:, None]
    raise ConfigError(f"cannot bring {x.shape[1]}-channel images to {channels} channels")


def load_set(p, name: str, split: str):
    """(A, B) of one split of set `name` (data.translation.Domain), brought to translate.sets.<name>.channels
    and, for the test split, cut to its first test_n; a ConfigError when the domains cannot be translated."""
    from dataclasses import replace

    from ganforge.data.translation import load_domains

    s = p.translate.sets[name]
    a, b = load_domains(Path("data/translate") / name, split)
    if s.channels is None and a.x.shape[1] != b.x.shape[1]:
        raise ConfigError(f"translate.sets.{name}.channels: the domains have {a.x.shape[1]} and "
                          f"{b.x.shape[1]} channels; set it to 1 or 3 to convert both")
    if a.x.shape[2:] != b.x.shape[2:]:
        raise ConfigError(f"translate.sets.{name}: the domains' images are {list(a.x.shape[2:])} and "
                          f"{list(b.x.shape[2:])} px; translation here keeps the size")
    out = []
    for d in (a, b):
        n = s.test_n if split == "test" else None
        d = replace(d, x=d.x[:n], y=None if d.y is None else d.y[:n], names=d.names[:n])
        out.append(replace(d, x=to_channels(d.x, s.channels)) if s.channels else d)
    return tuple(out)


def data_info(p, name: str) -> dict:
    from ganforge.data.prepared import load_info

    info = load_info(Path("data/translate") / name, p.translate.sets[name].dataset)
    if info.get("kind") != "translation":
        raise ConfigError(f"translate.sets.{name}.dataset: data/translate/{name} holds {info.get('name')}, "
                          "not a translation data set: rerun its download stage")
    return info


def check_set(p, name: str) -> dict:
    """The set's params against its data; returns info.json."""
    info = data_info(p, name)
    s = p.translate.sets[name]
    if s.ground_truth and not info["paired"]["test"]:
        raise ConfigError(f"translate.sets.{name}.ground_truth: {s.dataset}'s test split is unpaired, so "
                          "there is no true counterpart to score against (set it to false)")
    if s.judge.self_supervised is None and info.get("judges", {}) and any(
            j["judge"] == "self-supervised" for j in info["judges"].values()):
        raise ConfigError(f"translate.sets.{name}.judge.self_supervised: {s.dataset} is judged without "
                          "labels (SimCLR), whose views are needed")
    return info


def check_model(p, name: str) -> dict:
    m = model_of(p, name)
    info = check_set(p, m.set)
    if m.model == "pix2pix" and not info["paired"]["train"]:
        raise ConfigError(f"translate.models.{name}.model: pix2pix learns from pairs, and "
                          f"{p.translate.sets[m.set].dataset}'s train split is unpaired (use cyclegan)")
    return info


def data_hash(p, name: str) -> str:
    """The set's content and its channel conversion."""
    from ganforge.data.prepared import content_hash

    channels = p.translate.sets[name].channels
    return content_hash(data_info(p, name)) + ("" if channels is None else f"-c{channels}")


# --- judges --------------------------------------------------------------------------------------
def judged_on_split(entry: str, p, channels: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(x, y, number of classes) of registry entry `entry`'s train split: prepared from the download cache
    (verified by content hash) into a temporary directory."""
    import tempfile

    from ganforge.data.download import download_dataset
    from ganforge.data.prepared import load_split

    with tempfile.TemporaryDirectory(prefix="ganforge-judge-") as tmp:
        info = download_dataset(entry, p.download, Path(tmp) / entry, seed=p.base.seed)
        x, y = load_split(Path(tmp) / entry, "train")
    return (to_channels(x, channels) if channels else x), y, len(info["classes"])


def judge(p, name: str, device, progress: bool = True) -> dict:
    """Train the judges of set `name`'s domains; write their models, reference features and metrics.json."""
    from ganforge.judges import domain_judges
    from ganforge.metrics import Reference, save_evaluator
    from ganforge.metrics.evaluator import Evaluator, accuracy, extract, train_evaluator
    from ganforge.metrics.ssl import train_ssl

    info = check_set(p, name)
    s, seed, j, paths = p.translate.sets[name], p.base.seed, p.translate.sets[name].judge, SetPaths(name)
    train, test = load_set(p, name, "train"), load_set(p, name, "test")
    judges = domain_judges(s.dataset)
    metrics, dhash = {"set": name, "dataset": s.dataset}, data_hash(p, name)
    for suffix, tr, te in zip(("a", "b"), train, test, strict=True):
        kind, on = judges[tr.name]
        if kind.name == "classifier":
            if on is not None:
                x, y, n_classes = judged_on_split(on, p, s.channels)
            elif tr.y is None:
                raise ConfigError(f"{s.dataset}: domain {tr.name} has no labels for its classifier judge")
            else:
                x, y, n_classes = tr.x, tr.y, len(info["classes"])
            epochs = max(j.epochs, math.ceil(j.min_images / len(x)))  # a small domain: more passes
            net = train_evaluator(x, y, n_classes, j.feature_dim, epochs, j.batch_size, j.lr, seed, device,
                                  progress)
        else:
            encoder = Evaluator(tr.x.shape[1], tr.x.shape[2], 0, j.feature_dim, "self-supervised")
            net = train_ssl(encoder, tr.x, j.self_supervised, batch_size=j.batch_size, lr=j.lr, seed=seed,
                            device=device, progress=progress)
        ref_fs = extract(net, te.x, device)
        ref = Reference.of(ref_fs)
        # the real-data floor: as many of the domain's train images as it has test images
        floor = fid_of(ref, extract(net, tr.x[: len(te.x)], device).features)
        m = {"domain": tr.name, "kind": kind.name, "trained_on": on or f"{tr.name} (train split)",
             "test_images": len(te.x), "floor": {"fid": floor}}
        if kind.name == "classifier" and te.y is not None:
            m["accuracy"] = accuracy(ref_fs, te.y)
        metrics[suffix] = m
        save_evaluator(paths.judge_model(suffix), net,
                       meta={"set": name, "dataset": s.dataset, "domain": tr.name, "data_hash": dhash})
        ref.save(paths.reference(suffix))
    atomic_write_json(paths.judge_results / "metrics.json", metrics)
    return metrics


def fid_of(ref, features: np.ndarray) -> float:
    from ganforge.metrics.fid import feature_stats, fid_from_stats

    return float(fid_from_stats(ref.mu, ref.sigma, *feature_stats(features)))


# --- training ------------------------------------------------------------------------------------
def code_fingerprint() -> str:
    """The engine's code hash plus the translation code and task: a checkpoint of other code is not
    resumed."""
    from ganforge.train.run import code_fingerprint as engine_code

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(engine_code().encode())
    for f in [*sorted((package / "translate").glob("*.py")), package / "tasks/translation.py"]:
        digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()[:16]


def train(p, name: str, device) -> dict:
    """Train model `name`; returns the model file's meta."""
    from ganforge.data.translation import paired
    from ganforge.sampling import png_bytes
    from ganforge.tasks.translation import ImageTranslation, Settings
    from ganforge.tracking.serving import log_translation_model
    from ganforge.tracking.training import RunSpec, train_tracked
    from ganforge.train.fast import FastPath
    from ganforge.train.history import history_tsv
    from ganforge.translate.nets import save_translators

    check_model(p, name)
    t, m, seed, paths = p.translate, p.translate.models[name], p.base.seed, ModelPaths(name)
    a, b = load_set(p, m.set, "train")
    ta, tb = load_set(p, m.set, "test")
    settings = Settings(**m.model_dump(include=set(Settings.model_fields)))
    task = ImageTranslation(settings, a.x, b.x, paired=paired(a, b), seed=seed, device=device,
                            fast_path=FastPath.choose("off", device), fixed=(ta.x, tb.x))
    dhash = data_hash(p, m.set)
    own = m.model_dump(exclude={"directions"})
    # a longer run continues the checkpoint, unless the learning rate's schedule depends on the length
    config = {"seed": seed, "data_hash": dhash, "device": torch.device(device).type,
              "model": {k: v for k, v in own.items() if k != "kimg" or m.lr_decay != "none"},
              "code": code_fingerprint()}
    run = RunSpec({"base": {"seed": seed}, "translate": {"model": name, **own}}, EXPERIMENT,
                  f"translate-{name}-{m.kimg:g}kimg",
                  {"dataset": p.translate.sets[m.set].dataset, "dataset_hash": dhash, "task": "translation",
                   "translate.model": name, "translate.set": m.set})
    tracked = train_tracked(
        task, steps=math.ceil(m.kimg * 1000 / m.batch_size), config=config,
        engine={"ema_decay": m.ema, "lr_decay": m.lr_decay, "fast_path": task.fast_path,
                "log_every": t.log_every, "image_every": t.image_every, "ckpt_every": t.ckpt_every},
        checkpoints=paths.checkpoints, results=paths.train, run=run, picture_key="translations",
        announce=f"{name} ({m.model}): {len(a.x)} + {len(b.x)} train images ({a.name}, {b.name}), "
                 f"device {device}")
    result, mlrun = tracked.result, tracked.mlrun
    G = result.ema if result.ema is not None else result.nets["G"]
    meta = {"model": name, "set": m.set, "dataset": p.translate.sets[m.set].dataset, "data_hash": dhash,
            "domains": [a.name, b.name], "shape": {"a": list(a.x.shape[1:]), "b": list(b.x.shape[1:])},
            "ema": result.ema is not None, "trained_steps": result.step, "trained_kimg": result.kimg,
            "seed": seed, "mlflow_run_id": mlrun.run_id}
    save_translators(paths.model, G.float().to(memory_format=torch.contiguous_format), meta)
    atomic_write_text(paths.train / "losses.tsv", history_tsv(result.history))
    atomic_write_bytes(paths.train / "translations.png", png_bytes(result.grid))
    tracked.log.flush(wait_seconds=60)
    version = log_translation_model(mlrun, paths.model, name)
    tracked.finish()
    print(f"trained {result.kimg:g} kimg ({result.step} steps); wrote {paths.model} (version {version} of "
          f"ganforge-{name}-translate)")
    return meta


# --- translating and evaluating ------------------------------------------------------------------
@torch.no_grad()
def apply(G, x: np.ndarray, direction: str, device) -> np.ndarray:
    """uint8 [N, C, H, W] of the source domain -> uint8 [N, C', H, W] of the target, in batches."""
    from ganforge.sampling import to_uint8

    out = []
    for i in range(0, len(x), BATCH):
        batch = torch.from_numpy(np.ascontiguousarray(x[i : i + BATCH])).to(device).float() / 127.5 - 1
        out.append(to_uint8(G(batch, direction)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *x.shape[1:]), np.uint8)


def load_model(p, name: str, device):
    """The model file of `name`, refused when it was trained on other data or lacks a direction asked."""
    from ganforge.translate.nets import load_translators

    m, paths = p.translate.models[name], ModelPaths(name)
    G, meta = load_translators(paths.model, device)
    if meta.get("data_hash") != data_hash(p, m.set):
        raise GanforgeError(f"{paths.model} was trained on other data than translate.sets.{m.set}: rerun "
                            f"train@{name}")
    if missing := [d for d in m.directions if d not in G.directions]:
        raise ConfigError(f"translate.models.{name}.directions: {paths.model} has no {missing[0]} generator "
                          f"(it translates {', '.join(G.directions)})")
    return G, meta


def translate(p, name: str, device, progress: bool = True) -> dict:
    """Each direction's translations of the test split (CycleGAN: and their way back) -> translated.npz:
    names_a, names_b, <direction> uint8 [N, C, H, W], cycle_<source> (G_ba(G_ab(a)), G_ab(G_ba(b)))."""
    check_model(p, name)
    m, paths = p.translate.models[name], ModelPaths(name)
    G, _ = load_model(p, name, device)
    test = dict(zip(("a", "b"), load_set(p, m.set, "test"), strict=True))
    arrays = {"names_a": test["a"].names, "names_b": test["b"].names}
    for direction in m.directions:
        src, _ = DIRECTIONS[direction]
        arrays[direction] = apply(G, test[src].x, direction, device)
        back = "ba" if direction == "ab" else "ab"
        if back in G.directions:
            arrays[f"cycle_{src}"] = apply(G, arrays[direction], back, device)
    atomic_save_npz(paths.translated, **arrays)
    return {k: list(v.shape) for k, v in arrays.items()}


def read_translated(path: Path, test: dict, directions) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        if any(list(z[f"names_{d}"]) != list(test[d].names) for d in ("a", "b")) or \
                any(k not in z.files for k in directions):
            raise GanforgeError(f"{path} holds other test images or directions than the params ask: rerun "
                                "the translate stage")
        return {k: z[k] for k in z.files if not k.startswith("names_")}


def paired_scores(x: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Means over images of PSNR and SSIM (scikit-image; data range 255; SSIM: its 7 x 7 uniform window at
    the positions that fit, population (co)variances as in Wang et al.'s formula, the channels' mean)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    pairs = list(zip(x, truth, strict=True))
    with np.errstate(divide="ignore"):  # identical images: inf, capped at 100 dB below
        psnr = [peak_signal_noise_ratio(t, u, data_range=255) for u, t in pairs]
    ssim = [structural_similarity(t, u, data_range=255, channel_axis=0, use_sample_covariance=False)
            for u, t in pairs]
    return {"psnr": float(np.mean(np.minimum(psnr, 100.0))), "ssim": float(np.mean(ssim))}


def evaluate(p, name: str, device) -> dict:
    """The table of each direction (identity baseline, the model): metrics.json, table.tsv, pictures.png."""
    from ganforge.io import read_json
    from ganforge.metrics import Reference, load_evaluator
    from ganforge.metrics.evaluator import extract
    from ganforge.sampling import make_grid, png_bytes

    check_model(p, name)
    m, s, paths, set_paths = p.translate.models[name], p.translate.sets[p.translate.models[name].set], \
        ModelPaths(name), SetPaths(p.translate.models[name].set)
    test = dict(zip(("a", "b"), load_set(p, m.set, "test"), strict=True))
    out = read_translated(paths.translated, test, m.directions)
    judge_file = set_paths.judge_results / "metrics.json"
    judge_metrics = read_json(judge_file, f"run judge@{m.set}")
    metrics: dict = {"model": name, "set": m.set, "kind": m.model,
                     "conventions": "fid: the target domain judge's features of the translated test images "
                                    "against its test images; fid_ratio = fid / the judge's real floor (as "
                                    "many of the target's train images); identity: the untranslated input; "
                                    "psnr/ssim: scikit-image, data range 255, against the true counterpart "
                                    "(paired test split); labels_kept: the target judge reads the source "
                                    "image's label; reads_as_target: it reads one of the target domain's "
                                    "classes; cycle_psnr: G_back(G(x)) against x"}
    pictures = []
    for direction in m.directions:
        src, tgt = DIRECTIONS[direction]
        net, _ = load_evaluator(set_paths.judge_model(tgt), device)
        ref = Reference.load(set_paths.reference(tgt))
        floor = judge_metrics.get(tgt, {}).get("floor", {}).get("fid")
        if not isinstance(floor, int | float) or not math.isfinite(floor):
            raise GanforgeError(f"{judge_file} has no real-data floor of domain {tgt}: rerun judge@{m.set}")
        source, target = test[src], test[tgt]
        rows = {}
        for method, x in (("identity", source.x), (m.model, out[direction])):
            fs = extract(net, x, device)
            row = {"fid": fid_of(ref, fs.features)}
            row["fid_ratio"] = row["fid"] / floor if floor > 0 else float("inf")
            if net.kind == "classifier" and source.y is not None and target.y is not None:
                read = fs.probs.argmax(1)
                if set(np.unique(source.y)) == set(np.unique(target.y)):  # one class list: the digit is kept
                    row["labels_kept"] = float((read == source.y).mean())
                else:  # the domains are classes (horse, zebra): translation changes the class
                    row["reads_as_target"] = float(np.isin(read, np.unique(target.y)).mean())
            if s.ground_truth:
                row |= paired_scores(x, target.x)
            rows[method] = row
        if f"cycle_{src}" in out:
            rows[m.model]["cycle_psnr"] = paired_scores(out[f"cycle_{src}"], source.x)["psnr"]
        metrics[direction] = {"source": source.name, "target": target.name, "images": len(source.x),
                              "floor_fid": floor, **rows}
        cols = [source.x[:PICTURE_ROWS], out[direction][:PICTURE_ROWS]]
        if s.ground_truth:
            cols.append(target.x[:PICTURE_ROWS])
        channels = max(c.shape[1] for c in cols)
        cols = [np.repeat(c, channels // c.shape[1], axis=1) for c in cols]
        pictures.append(make_grid(np.stack(cols, 1).reshape(-1, *cols[0].shape[1:]), nrow=len(cols)))
    atomic_write_json(paths.evaluate / "metrics.json", metrics)
    keys = ["fid", "fid_ratio", "labels_kept", "reads_as_target", "psnr", "ssim", "cycle_psnr"]
    lines = ["direction\tmethod\t" + "\t".join(keys)]
    for direction in m.directions:
        for method in ("identity", m.model):
            row = metrics[direction][method]
            lines.append(f"{direction}\t{method}\t" + "\t".join(f"{row[k]:.4f}" if k in row else "-"
                                                                for k in keys))
    atomic_write_text(paths.evaluate / "table.tsv", "\n".join(lines) + "\n")
    atomic_write_bytes(paths.evaluate / "pictures.png", png_bytes(side_by_side(pictures)))
    return metrics


def side_by_side(grids: list[np.ndarray], gap: int = 8) -> np.ndarray:
    """HWC (or HW) uint8 grids beside each other on white, top-aligned."""
    grids = [g[..., None] if g.ndim == 2 else g for g in grids]
    c = max(g.shape[2] for g in grids)
    grids = [np.repeat(g, c // g.shape[2], axis=2) for g in grids]
    h = max(g.shape[0] for g in grids)
    canvas = np.full((h, sum(g.shape[1] for g in grids) + gap * (len(grids) - 1), c), 255, np.uint8)
    x = 0
    for g in grids:
        canvas[: g.shape[0], x : x + g.shape[1]] = g
        x += g.shape[1] + gap
    return canvas[..., 0] if c == 1 else canvas
