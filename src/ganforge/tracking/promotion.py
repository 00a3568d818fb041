"""Which registered generator is the champion: the policy (strictly better fid_ratio wins) and its lock.

evaluate calls promote_if_better(run, dataset, None, fid_ratio) once fid_ratio is known; the decision is
recorded as run tags, and the champion is what `models:/ganforge-<dataset>@champion` loads. Only a version
whose files match the sha256 recorded at its registration (serving.integrity_problem) is trusted: one that
does not is never promoted, and a champion that no longer does is no champion to beat.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from ganforge.tracking.serving import integrity_problem, registered_model_name
from ganforge.tracking.store import Run, project_root

CHAMPION = "champion"


def _registry_lock(root: str | Path | None = None):
    """An exclusive file lock for read-decide-write on the registry from one machine.

    The registry has no compare-and-set: two queued experiments (`dvc queue start -j 2`) finishing together
    could both read the old champion and both move the alias. The lock lives in the DVC project that owns
    the store (queued copies map back to it), so it serialises every process of one workspace. Processes on
    different machines are not serialised; there the last writer wins.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; single-user use there
        return contextlib.nullcontext()
    base = project_root(root)
    lock_dir = base / ".dvc" / "tmp" if (base / ".dvc").is_dir() else base
    lock_dir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def held():
        with open(lock_dir / "ganforge-registry.lock", "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    return held()


def model_version_of(run: Run, dataset: str) -> int | None:
    """The newest version of ganforge-<dataset> logged by `run`, or None."""
    name = registered_model_name(dataset)
    found = run.client.search_model_versions(f"name='{name}' and run_id='{run.run_id}'")
    return max((int(v.version) for v in found), default=None)


def champion(c: MlflowClient, dataset: str) -> tuple[int, float | None] | None:
    """(version, fid_ratio) of the current champion of ganforge-<dataset>, or None when there is none."""
    name = registered_model_name(dataset)
    try:
        mv = c.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None
    ratio = mv.tags.get("fid_ratio")
    if ratio is None and mv.run_id:  # promoted before tags existed: fall back to its run's metric
        ratio = c.get_run(mv.run_id).data.metrics.get("fid_ratio")
    ratio = float(ratio) if ratio is not None else None
    return int(mv.version), (ratio if ratio is not None and math.isfinite(ratio) else None)


def sample_variant(truncation: float | None, classes: list | None, psi: float = 1.0) -> str:
    """"" for the standard sample the champion is judged on (every class in turn, no truncation in z or
    w), else what differs, e.g. "truncation 1.5, classes [7]"."""
    parts = ([f"truncation {truncation:g}"] if truncation is not None else []) + (
        [f"psi {psi:g}"] if psi != 1 else []) + ([f"classes {list(classes)}"] if classes is not None else [])
    return ", ".join(parts)


def promote_if_better(run: Run, dataset: str, version: int | None, fid_ratio: float,
                      root: str | Path | None = None, variant: str = "") -> dict:
    """Set alias `champion` on `version` of ganforge-<dataset> if its fid_ratio beats the champion's.

    version None = the version this run registered (model_version_of). Lower fid_ratio is better; a tie
    keeps the current champion; no champion (or one without a known fid_ratio) means this version is
    promoted. A NaN or infinite fid_ratio is never promoted (it would win against nothing and could never
    be beaten). The version gets a `fid_ratio` tag; the run gets tags registry.decision (promoted | kept |
    rejected | unregistered), registry.champion_version and registry.previous_champion_*, and the same
    dict is returned.

    Integrity: the version's files are checked against the sha256 recorded when it was registered before
    it may take the alias; one that does not match is rejected (registry.integrity says which files). A
    current champion that does not match (its files were changed in the artifact store, or it predates
    the digests) is not trusted: any valid version replaces it (registry.previous_champion_integrity).

    variant: sample_variant() of the samples that fid_ratio measures. A non-standard sample (truncated, or
    some classes only) is not comparable with the champion's figure, so it is not judged: the registry,
    the alias and the version's fid_ratio tag are left as they are (a look at only the 7s must not cost the
    champion its place).
    """
    name = registered_model_name(dataset)
    if variant:
        decision = {"registry.decision": f"not judged (non-standard sample: {variant}; the registry compares "
                                         "samples of every class, untruncated)", "registry.model": name}
        run.set_tags(decision)
        return decision
    if version is None:
        version = model_version_of(run, dataset)
    if version is None:
        decision = {"registry.decision": "unregistered", "registry.model": name}
        run.set_tags(decision)
        return decision
    c = run.client
    # checked before the lock (a download): a version whose files changed is never a candidate
    tampered = integrity_problem(c, name, version)
    valid = math.isfinite(float(fid_ratio)) and tampered is None
    untrusted = None
    with _registry_lock(root):
        c.set_model_version_tag(name, str(version), "fid_ratio", repr(float(fid_ratio)))
        current = champion(c, dataset)
        if current is not None and current[0] != version:
            untrusted = integrity_problem(c, name, current[0])
        better = valid and (current is None or current[1] is None or untrusted is not None
                            or float(fid_ratio) < current[1])
        if current is not None and current[0] == version:
            better = valid  # re-evaluating the champion itself: it stays, with its new fid_ratio
        if better:
            c.set_registered_model_alias(name, CHAMPION, str(version))
    decision = {
        "registry.model": name,
        "registry.version": version,
        "registry.fid_ratio": float(fid_ratio),
        "registry.decision": "promoted" if better else "kept" if valid else "rejected",
        "registry.champion_version": version if better else current[0] if current else "none",
        "registry.previous_champion_version": current[0] if current else "none",
        "registry.previous_champion_fid_ratio": current[1] if current and current[1] is not None else "none",
    }
    if tampered is not None:
        decision["registry.integrity"] = tampered
    if untrusted is not None:
        decision["registry.previous_champion_integrity"] = untrusted
    run.set_tags(decision)
    return decision
