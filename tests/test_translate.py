"""The translation pipeline's stages (stages/translate_*.py) through their real CLIs on real emoji (Google ->
Twitter, from the download cache): judges, pix2pix and CycleGAN, translate, evaluate beside the identity
baseline, the registered model answering like the translate stage, resume bit for bit; the paired metrics
and the channel conversion against reference implementations; the bad-input cases (exit 2 naming the key,
nothing written; a bad request refused)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from test_superres import cli

from conftest import ROOT, set_params

pytestmark = pytest.mark.slow  # trains four tiny GANs through the CLIs

TINY_JUDGE = {"epochs": 1, "min_images": 0, "batch_size": 128, "lr": 0.003, "feature_dim": 16,
              "self_supervised": {"epochs": 1, "temperature": 0.2, "crop": 0.5, "flip": True,
                                  "rotate90": False, "jitter": 0.2}}
TINY_NETS = {"g_width": 4, "g_blocks": 1, "g_downs": 6, "d_width": 4, "d_layers": 2, "batch_size": 2,
             "kimg": 0.012, "lr_decay": "none"}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project dir: params.yaml with one set (emoji, 12 test pairs) and two tiny models, and the set's data
    prepared by the real download stage (the emoji packages from the user cache)."""
    root = tmp_path_factory.mktemp("translate")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    t = raw["translate"]
    t.update({"device": "cpu", "log_every": 2, "image_every": 3, "ckpt_every": 2})
    t["sets"] = {"emoji": {**t["sets"]["emoji"], "judge": TINY_JUDGE, "test_n": 12}}
    t["models"] = {name: {**t["models"][name], **TINY_NETS} for name in ("emoji-pix2pix", "emoji-cyclegan")}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    code, said = cli("download", "--params", str(root / "params.yaml"), "--dataset", "emoji-google-twitter",
                     "--out", str(root / "data/translate/emoji"))
    assert code == 0, said[-2000:]
    return root


@pytest.fixture
def in_project(project, store, monkeypatch) -> Path:
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["MLFLOW_TRACKING_URI"])
    return project


def test_paired_metrics_match_torchmetrics_and_luma_matches_pil(project):
    from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    from ganforge.data.translation import load_domains
    from ganforge.translate.run import paired_scores, to_channels

    a, b = load_domains(project / "data/translate/emoji", "test")
    x, truth = a.x[:6], b.x[:6]
    got = paired_scores(x, truth)
    tx, tt = torch.from_numpy(x).double(), torch.from_numpy(truth).double()
    psnr = np.mean([float(tm_psnr(u[None], t[None], data_range=255.0)) for u, t in zip(tx, tt, strict=True)])
    assert got["psnr"] == pytest.approx(psnr, abs=1e-6)
    # torchmetrics' SSIM map with the same 7 x 7 uniform window, at the positions where it fits
    ssim = np.mean([tm_ssim(u[None], t[None], data_range=255.0, gaussian_kernel=False, kernel_size=7,
                            return_full_image=True)[1][..., 3:-3, 3:-3].mean().item()
                    for u, t in zip(tx, tt, strict=True)])
    assert got["ssim"] == pytest.approx(ssim, abs=1e-9)
    assert paired_scores(truth, truth)["ssim"] == pytest.approx(1.0)
    # colour -> grey is BT.601 luma as PIL's convert("L") computes it; grey -> colour repeats the channel
    grey = to_channels(x, 1)
    pil = np.stack([np.asarray(Image.fromarray(im.transpose(1, 2, 0)).convert("L")) for im in x])
    assert np.abs(grey[:, 0].astype(int) - pil).max() <= 1
    assert (to_channels(grey, 3) == grey).all() and to_channels(grey, 3).shape[1] == 3


def translate_stage(stage: str, *args: str) -> tuple[int, str]:
    return cli(f"translate_{stage}", *args)


def test_the_stages_judge_train_translate_evaluate_and_serve(in_project, store):
    project = in_project
    code, said = translate_stage("judge", "--set", "emoji")
    assert code == 0 and "google: self-supervised judge" in said, said[-2000:]
    for name in ("emoji-pix2pix", "emoji-cyclegan"):
        for stage in ("train", "apply", "evaluate"):
            code, said = translate_stage(stage, "--model", name)
            assert code == 0, (name, stage, said[-3000:])
    res = project / "results/translate"
    judge = json.loads((res / "emoji/judge/metrics.json").read_text())
    assert judge["a"]["domain"] == "google" and judge["b"]["floor"]["fid"] > 0
    pix, cyc = (json.loads((res / f"emoji-{m}/evaluate/metrics.json").read_text()) for m in ("pix2pix",
                                                                                            "cyclegan"))
    assert set(pix) >= {"ab"} and "ba" not in pix and set(cyc) >= {"ab", "ba"}
    assert set(pix["ab"]["identity"]) == {"fid", "fid_ratio", "psnr", "ssim"}
    assert set(cyc["ba"]["cyclegan"]) == {"fid", "fid_ratio", "psnr", "ssim", "cycle_psnr"}
    # the identity baseline is the untranslated input against the truth, scored by the same code
    from ganforge.data.translation import load_domains
    from ganforge.translate.run import paired_scores

    a, b = load_domains(project / "data/translate/emoji", "test")
    assert pix["ab"]["identity"]["ssim"] == pytest.approx(paired_scores(a.x[:12], b.x[:12])["ssim"])
    with np.load(res / "emoji-cyclegan/translated.npz") as z:
        assert z["ab"].shape == z["cycle_a"].shape == (12, 3, 64, 64) and z["ab"].dtype == np.uint8
        translated = z["ab"][:3]
    table = (res / "emoji-cyclegan/evaluate/table.tsv").read_text().splitlines()
    assert [r.split("\t")[:2] for r in table[1:]] == [["ab", "identity"], ["ab", "cyclegan"],
                                                     ["ba", "identity"], ["ba", "cyclegan"]]
    assert Image.open(res / "emoji-cyclegan/evaluate/pictures.png").size[0] > 3 * 64
    assert Image.open(res / "emoji-pix2pix/train/translations.png").size[0] > 3 * 64

    # the registered model answers as the translate stage translated; a bad request is refused
    from mlflow import MlflowClient

    from ganforge.tracking.serving import RequestError, load_verified, translation_model_name

    name = translation_model_name("emoji-cyclegan")
    client = MlflowClient(store["MLFLOW_TRACKING_URI"])
    version = max(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    model = load_verified(f"models:/{name}/{version}", tracking_uri=store["MLFLOW_TRACKING_URI"])
    answer = model.predict([{"image": x.transpose(1, 2, 0), "direction": "ab"} for x in a.x[:3]])
    np.testing.assert_array_equal(np.stack(answer["image"]), translated.transpose(0, 2, 3, 1))
    back = model.predict([{"image": b.x[0].transpose(1, 2, 0), "direction": "ba"}])
    assert np.asarray(back["image"][0]).shape == (64, 64, 3)
    for row, why in (({"image": a.x[0][:, :32].transpose(1, 2, 0)}, r"translates \[64, 64, 3\]"),
                     ({"image": a.x[0].transpose(1, 2, 0) / 255.0}, "must be uint8"),
                     ({"image": a.x[0].transpose(1, 2, 0), "direction": "ca"}, "direction 'ca'")):
        with pytest.raises(RequestError, match=why):
            model.predict([row])
    pix2pix = load_verified(f"models:/{translation_model_name('emoji-pix2pix')}/1",
                            tracking_uri=store["MLFLOW_TRACKING_URI"])
    with pytest.raises(RequestError, match="translates 'ab' "):
        pix2pix.predict([{"image": b.x[0].transpose(1, 2, 0), "direction": "ba"}])


def test_a_longer_run_resumes_its_checkpoint_bit_for_bit(in_project):
    project = in_project
    model = project / "models/translate/emoji-cyclegan.pt"
    ckpt = project / "checkpoints-translate/emoji-cyclegan"
    shutil.rmtree(ckpt, ignore_errors=True)
    code, said = translate_stage("train", "--model", "emoji-cyclegan")  # 6 steps
    assert code == 0 and "(6 steps)" in said, said[-2000:]
    set_params(project / "params.yaml", {"translate.models.emoji-cyclegan.kimg": 0.02})
    try:
        code, said = translate_stage("train", "--model", "emoji-cyclegan")  # on to 10 from step 6
        assert code == 0 and "(10 steps)" in said and "step 6" in said, said[-2000:]
        resumed = torch.load(model, weights_only=True)["state_dict"]
        shutil.rmtree(ckpt)
        code, said = translate_stage("train", "--model", "emoji-cyclegan")  # 10 in one go
        assert code == 0, said[-2000:]
        fresh = torch.load(model, weights_only=True)["state_dict"]
        assert resumed.keys() == fresh.keys() and all(torch.equal(resumed[k], fresh[k]) for k in fresh)
    finally:
        set_params(project / "params.yaml", {"translate.models.emoji-cyclegan.kimg": TINY_NETS["kimg"]})


def test_bad_input_exits_2_naming_the_key_and_writes_nothing(in_project, tmp_path):
    from dataclasses import replace

    from ganforge.data.prepared import load_info
    from ganforge.data.translation import load_domains, write_translation

    project = in_project
    # data sets made from the real one: B in grey (channel counts differ), and B's test rows reversed
    # (an unpaired test split) and its train rows too (an unpaired train split)
    info = load_info(project / "data/translate/emoji")
    keep = {k: info[k] for k in ("name", "kind", "classes")}
    splits = {s: load_domains(project / "data/translate/emoji", s) for s in ("train", "test")}
    grey = {s: (a, replace(b, x=b.x.mean(1, keepdims=True).astype(np.uint8))) for s, (a, b) in
            splits.items()}
    write_translation(project / "data/translate/grey", grey, keep)
    shuffled = {s: (a, replace(b, x=b.x[::-1].copy(), names=b.names[::-1].copy())) for s, (a, b) in
                splits.items()}
    write_translation(project / "data/translate/unpaired", shuffled, keep)
    (project / "data/translate/unpaired-truth").symlink_to("unpaired")
    raw = yaml.safe_load((project / "params.yaml").read_text())
    emoji = raw["translate"]["sets"]["emoji"]
    raw["translate"]["sets"] |= {"grey": emoji, "unpaired": {**emoji, "ground_truth": False},
                                 "unpaired-truth": emoji}
    models = raw["translate"]["models"]
    models |= {"grey-cyclegan": {**models["emoji-cyclegan"], "set": "grey"},
               "unpaired-pix2pix": {**models["emoji-pix2pix"], "set": "unpaired"},
               "unpaired-cyclegan": {**models["emoji-cyclegan"], "set": "unpaired"}}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    before = sorted(str(p.relative_to(project)) for p in (project / "models").rglob("*"))
    cases = [
        ("train", "--model", "grey-cyclegan", "translate.sets.grey.channels: the domains have 3 and 1"),
        ("train", "--model", "unpaired-pix2pix", "translate.models.unpaired-pix2pix.model: pix2pix learns "
                                                 "from pairs"),
        ("judge", "--set", "unpaired-truth", "translate.sets.unpaired-truth.ground_truth: "),
        ("train", "--model", "nope", "translate.models has emoji-pix2pix"),
    ]
    for stage, flag, value, why in cases:
        code, said = translate_stage(stage, flag, value, "--params", str(params))
        assert code == 2 and why in said, (value, said[-1500:])
    # a direction that does not exist: pix2pix has no B -> A generator
    set_params(params, {"translate.models.emoji-pix2pix.directions": ["ab", "ba"]})
    code, said = translate_stage("apply", "--model", "emoji-pix2pix", "--params", str(params))
    why = "translate.models.emoji-pix2pix: directions: pix2pix translates A -> B only"
    assert code == 2 and why in said, said[-1500:]
    assert sorted(str(p.relative_to(project)) for p in (project / "models").rglob("*")) == before
    assert not (project / "results/translate/grey-cyclegan").exists()
