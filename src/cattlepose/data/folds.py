"""Group k-fold assignment: animals of one group (farm, photograph) never straddle folds. Saved as folds.csv."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

from cattlepose.core.errors import UserError
from cattlepose.core.files import atomic_open
from cattlepose.data.photos import photo_labels
from cattlepose.data.records import Sample


def fold_groups(samples: Sequence[Sample], group_by: str | None) -> list[str]:
    """Each sample's fold group. `null`: every animal is its own group. Otherwise the photograph is the smallest
    group: `image` groups by it, and for farm_name, category or source (a sample without one is grouped by its
    photograph) groups that share a photograph become one, so no photograph is ever in two folds."""
    return _groups(samples, group_by)[0]


def merged_groups(samples: Sequence[Sample], group_by: str | None) -> list[list[str]]:
    """The `group_by` groups that had to become one because they share a photograph (each list sorted)."""
    return _groups(samples, group_by)[1]


def _groups(samples: Sequence[Sample], group_by: str | None) -> tuple[list[str], list[list[str]]]:
    if group_by is None:
        return [s.key for s in samples], []
    photo = photo_labels(samples)
    if group_by == "image":
        return photo, []
    labels = []
    for s, p in zip(samples, photo, strict=True):
        value = s.meta.get(group_by, s.group if group_by == "farm_name" else None)
        labels.append(p if value is None else str(value))
    # union-find over groups and photographs: a group joins every group it shares a photograph with
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(x: tuple[str, str]) -> tuple[str, str]:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for label, p in zip(labels, photo, strict=True):
        a, b = find(("group", label)), find(("photo", p))
        if a != b:
            parent[b] = a
    members: dict[tuple[str, str], set[str]] = {}
    for label in labels:
        members.setdefault(find(("group", label)), set()).add(label)
    name = {root: min(held) for root, held in members.items()}
    merged = sorted(sorted(held) for held in members.values() if len(held) > 1)
    return [name[find(("group", label))] for label in labels], merged


def assign_folds(samples: Sequence[Sample], n_folds: int, group_by: str | None, seed: int) -> list[int]:
    """Balanced group k-fold: each group (largest first) goes to the fold with the fewest samples so far, which
    is what scikit-learn's GroupKFold does. Its order among groups of equal size follows the group labels, so the
    groups are labelled by a seeded shuffle first: a different `seed` gives different folds.

    With fewer groups than folds this is impossible, and the error says which setting to change.
    """
    groups, merged = _groups(samples, group_by)
    names = sorted(set(groups))
    if len(names) < n_folds:
        why = f" ({sum(map(len, merged))} of them share photographs and count as {len(merged)})" if merged else ""
        raise UserError(
            f"{len(names)} distinct '{group_by}' group(s){why} cannot fill {n_folds} folds; lower train.folds or "
            "set data.group_by to image or null",
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
        for s, group, k in zip(samples, fold_groups(samples, group_by), folds, strict=True):
            w.writerow([s.key, s.image.name, group, k])


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
