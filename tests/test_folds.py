from pathlib import Path

import numpy as np
import pytest

from cattlepose.core.errors import UserError
from cattlepose.data.folds import assign_folds, parse_fold_list, read_folds, write_folds
from cattlepose.data.records import Sample


def _samples(groups: list[str]) -> list[Sample]:
    return [
        Sample(image=Path(f"img_{i:03d}.jpg"), keypoints=np.zeros((3, 3)), group=g, meta={"farm_name": g})
        for i, g in enumerate(groups)
    ]


def test_groups_never_straddle_folds_and_folds_are_balanced():
    rng = np.random.default_rng(0)
    groups = [f"farm{int(g)}" for g in rng.integers(0, 12, size=300)]
    samples = _samples(groups)
    folds = assign_folds(samples, 5, "farm_name", seed=3)
    fold_of_group: dict[str, set[int]] = {}
    for g, k in zip(groups, folds, strict=True):
        fold_of_group.setdefault(g, set()).add(k)
    assert all(len(ks) == 1 for ks in fold_of_group.values())
    sizes = np.bincount(folds, minlength=5)
    assert sizes.min() > 0
    # greedy largest-first: no fold exceeds the mean by more than the largest group
    assert sizes.max() - sizes.mean() <= max(groups.count(g) for g in set(groups))


def _reference_folds(samples: list[Sample], n_folds: int, seed: int) -> list[int]:
    """The hand-written assignment cattlepose had before it used scikit-learn: shuffle the groups with the seed,
    then give each, largest first (a stable sort keeps the shuffle among equal sizes), to the lightest fold."""
    from collections import Counter

    groups = [s.group for s in samples]
    sizes = Counter(groups)
    names = sorted(sizes)
    order = np.random.default_rng(seed).permutation(len(names))
    load, fold_of = [0] * n_folds, {}
    for g in sorted((names[i] for i in order), key=lambda g: -sizes[g]):
        k = int(np.argmin(load))
        fold_of[g], load[k] = k, load[k] + sizes[g]
    return [fold_of[g] for g in groups]


@pytest.mark.parametrize("trial", range(12))
def test_group_kfold_gives_the_folds_of_the_hand_written_version(trial):
    """Same folds.csv as before the switch to GroupKFold, ties among equal groups included."""
    rng = np.random.default_rng(trial)
    n_groups = int(rng.integers(3, 30))
    samples = _samples([f"farm{int(g)}" for g in rng.integers(0, n_groups, size=int(rng.integers(20, 200)))])
    n_folds = int(rng.integers(2, min(6, len({s.group for s in samples})) + 1))
    seed = int(rng.integers(0, 1000))
    assert assign_folds(samples, n_folds, "farm_name", seed) == _reference_folds(samples, n_folds, seed)


def test_same_seed_same_folds_different_seed_differs():
    samples = _samples([f"g{i}" for i in range(40)])
    a = assign_folds(samples, 4, "farm_name", seed=0)
    assert a == assign_folds(samples, 4, "farm_name", seed=0)
    assert a != assign_folds(samples, 4, "farm_name", seed=1)
    assert np.bincount(a).tolist() == [10, 10, 10, 10]


def test_group_by_none_is_per_sample_and_image_keeps_animals_together():
    samples = [
        Sample(image=Path("a.jpg"), keypoints=np.zeros((1, 3)), image_id="1", ann_id=str(i)) for i in range(3)
    ] + [Sample(image=Path("b.jpg"), keypoints=np.zeros((1, 3)), image_id="2", ann_id=str(i)) for i in range(3)]
    by_image = assign_folds(samples, 2, "image", seed=0)
    assert len(set(by_image[:3])) == 1 and len(set(by_image[3:])) == 1 and by_image[0] != by_image[3]
    assert sorted(np.bincount(assign_folds(samples, 3, None, seed=0))) == [2, 2, 2]


def test_too_few_groups_is_a_user_error():
    with pytest.raises(UserError, match="cannot fill 5 folds"):
        assign_folds(_samples(["a", "b", "a"]), 5, "farm_name", seed=0)


def test_folds_csv_round_trip_and_mismatch(tmp_path):
    samples = _samples([f"g{i % 7}" for i in range(30)])
    folds = assign_folds(samples, 3, "farm_name", seed=0)
    write_folds(tmp_path / "folds.csv", samples, folds, "farm_name")
    assert read_folds(tmp_path / "folds.csv", samples) == folds
    with pytest.raises(UserError, match="does not match"):
        read_folds(tmp_path / "folds.csv", samples[:-1])


def test_parse_fold_list():
    assert parse_fold_list(None, 3) == [0, 1, 2]
    assert parse_fold_list("2,0", 3) == [0, 2]
    with pytest.raises(UserError):
        parse_fold_list("3", 3)
    with pytest.raises(UserError):
        parse_fold_list("x", 3)
