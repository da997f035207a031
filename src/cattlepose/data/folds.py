"""Group k-fold assignment: animals of one group (farm, image) never straddle folds. Saved as folds.csv."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

from cattlepose.core.errors import UserError
from cattlepose.core.files import atomic_open
from cattlepose.data.records import Sample


def group_of(sample: Sample, group_by: str | None) -> str:
    if group_by is None:
        return sample.key
    if group_by == "image":
        return sample.image_id
    value = sample.meta.get(group_by, sample.group if group_by == "farm_name" else None)
    return sample.key if value is None else str(value)


def assign_folds(samples: Sequence[Sample], n_folds: int, group_by: str | None, seed: int) -> list[int]:
    """Balanced group k-fold: each group (largest first) goes to the fold with the fewest samples so far, which
    is what scikit-learn's GroupKFold does. Its order among groups of equal size follows the group labels, so the
    groups are labelled by a seeded shuffle first: a different `seed` gives different folds.

    With fewer groups than folds this is impossible, and the error says which setting to change.
    """
    groups = [group_of(s, group_by) for s in samples]
    names = sorted(set(groups))
    if len(names) < n_folds:
        raise UserError(
            f"{len(names)} distinct '{group_by}' group(s) cannot fill {n_folds} folds; lower train.folds or set "
            "data.group_by to image or null",
            field="data.group_by",
        )
    order = np.random.default_rng(seed).permutation(len(names))
    # GroupKFold takes ties largest label first: the shuffle's first group gets the largest label
    label = {names[i]: len(names) - rank for rank, i in enumerate(order)}
    labels = np.array([label[g] for g in groups])
    fold = np.empty(len(samples), dtype=int)
    for k, (_, test) in enumerate(GroupKFold(n_splits=n_folds).split(labels, groups=labels)):
        fold[test] = k
    return fold.tolist()


def write_folds(path: Path, samples: Sequence[Sample], folds: Sequence[int], group_by: str | None) -> None:
    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["key", "image", "group", "fold"])
        for s, k in zip(samples, folds, strict=True):
            w.writerow([s.key, s.image.name, group_of(s, group_by), k])


def read_folds(path: Path, samples: Sequence[Sample]) -> list[int]:
    """The saved assignment, checked against the current samples so a changed data set is not silently reused."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    by_key = {r["key"]: int(r["fold"]) for r in rows}
    missing = [s.key for s in samples if s.key not in by_key]
    if missing or len(by_key) != len(samples):
        raise UserError(
            f"folds.csv does not match the data set ({len(missing)} sample(s) not in it, {len(by_key)} rows for "
            f"{len(samples)} samples); start a new run with --name or delete the run folder",
            path=path,
        )
    return [by_key[s.key] for s in samples]


def parse_fold_list(text: str | None, n_folds: int) -> list[int]:
    """'0,2' -> [0, 2]; None or 'all' -> every fold. An empty list is an error, not every fold."""
    if text is None or text.strip() == "all":
        return list(range(n_folds))
    try:
        folds = sorted({int(t) for t in text.split(",") if t.strip()})
        if not folds:
            raise ValueError
    except ValueError:
        raise UserError(f"--folds '{text}' must be comma-separated fold numbers, e.g. 0,1", field="--folds") from None
    bad = [k for k in folds if not 0 <= k < n_folds]
    if bad:
        raise UserError(f"--folds {bad} out of range 0..{n_folds - 1}", field="--folds")
    return folds
