"""Real photographs, one species to another: from scratch vs pretrained, default config vs the small-set recipe.

On a COCO file with several species (the shared Animal-Pose sheep and horses), every variant fine-tunes on one
fold of the target species (`--fold` of `--folds`, grouped by image; several folds give a mean) and is scored
on the held-out images:

  default        configs/default.yaml from scratch, `--default-epochs` (its own 18: its own time)
  recipe         the small-real-set recipe from scratch (`--recipe-epochs` to give it the same time)
  recipe+source  the recipe, starting from a run on the source species (90% of it)
  recipe+cattle  the recipe, starting from a run on the embedded synthetic cattle (fold 0 of `make train`'s)
  ...+heavy      the same with heavy occlusion augmentation, to see what it does on real photos
  ...+bb0.3      the same with the backbone at 0.3 of the learning rate (a fine-tuning setting)
  ...+lite0      EfficientNet-Lite0 (lite1, lite2) from its ImageNet weights instead of HRNet from scratch
                 (recipe+lite1+s160 is configs/real_small_cpu.yaml as it ships)
  ...+species    starting from a run on every other species of --data and --extra-data (90% of them), itself
                 started as the variant's network is (ImageNet for a lite): ImageNet -> other species -> target
  ...+psalast, +psa4  PSA in the last BasicBlock of each HRNet branch only, or in stage 4's blocks only
  ...+nopsa, +s160  no PSA, a 160x160 input (any multiple of 32) for the fine-tune; pretraining runs take
                 --pretrain-epochs and --pretrain-size (runs of other settings need another --runs folder:
                 one that disagrees with the command is refused, never reused)

Each variant is a `cattlepose train` run in `--runs` (re-running skips finished ones); the table gives PCK of the
box at 0.1 and 0.2, OKS AP (pycocotools, the recognised schema's sigmas), and the fine-tune's training minutes.

    .venv/bin/python benchmarks/transfer.py --data ../shared/datasets/animalpose_sheep_horse/annotations.json
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train(name: str, config: Path, runs: Path, fold: int, sets: list[str]) -> Path:
    """Train one fold of a run, or resume it. A finished fold goes through `cattlepose train --resume` too: it
    trains nothing then, but refuses a run that was started with another config (a pretraining of 10 epochs
    reused by a command asking for 20), so a table never mixes settings under one name."""
    run = runs / name
    cmd = [sys.executable, "-m", "cattlepose", "train", "-c", str(config), "--name", name, "--runs-dir",
           str(runs), "--folds", str(fold), "--resume", "-q", *(a for s in sets for a in ("-s", s))]  # fmt: skip
    if not (run / f"fold{fold}" / "done.json").is_file():
        print("$", " ".join(cmd), flush=True)
    code = subprocess.run(cmd).returncode
    if code:  # the CLI's own exit code: 2 for a bad setting or a run of other settings
        print(f"{run}: training failed or the run disagrees with this command (its error above)", file=sys.stderr)
        sys.exit(code)
    return run


def scores(run: Path, fold: int) -> dict[str, float]:
    """The held-out fold's metrics (validation after the last epoch) and the training minutes."""
    with open(run / f"fold{fold}" / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    last = rows[-1]
    out = {k[4:]: float(v) for k, v in last.items() if k.startswith("val_") and v not in ("", None)}
    out["minutes"] = sum(float(r["seconds"]) for r in rows) / 60
    out["epochs"] = len(rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True, help="COCO keypoints file with both species")
    ap.add_argument("--source", default="horse")
    ap.add_argument(
        "--extra-data",
        type=Path,
        action="append",
        default=[],
        help="more COCO files whose species the +species pretraining adds (e.g. the dogs and cats)",
    )
    ap.add_argument("--target", default="sheep")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--fold", type=_fold_list, default=[0], help="held-out fold, or several: 0,1,2,3 (adds a mean)")
    ap.add_argument("--recipe", type=Path, default=ROOT / "configs" / "real_small_cpu.yaml")
    ap.add_argument("--default-epochs", type=int, default=18, help="epochs of configs/default.yaml")
    ap.add_argument("--recipe-epochs", type=int, default=None, help="epochs of the recipe (default: its own)")
    ap.add_argument("--tag", default="", help="suffix of the variants' run names (one per budget)")
    ap.add_argument("--pretrain-epochs", type=int, default=None, help="source run epochs (default: the recipe's)")
    ap.add_argument("--pretrain-size", type=int, default=None, help="input size of the source runs (default 128)")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "transfer")
    ap.add_argument("--only", default=None, help="comma-separated variants, e.g. default,recipe+horse+bb0.3")
    ap.add_argument("-s", "--set", action="append", default=[], help="override for every run, e.g. train.threads=1")
    ap.add_argument("--tune", action="append", default=[], help="override for the fine-tunes only (not the runs "
                    "they start from), e.g. train.batch_size=16")  # fmt: skip
    ap.add_argument("--plot", type=Path, default=None, help="PNG of the metrics against fine-tuning epochs, over "
                    "every finished run of the variants in --runs (all budgets, the first fold)")  # fmt: skip
    args = ap.parse_args()

    data = [
        f"data.train={args.data.resolve()}",
        "data.format=coco",
        "data.schema=from_data",
        "data.group_by=image",
        *args.set,
    ]
    target = [*data, f"data.category={args.target}", f"train.folds={args.folds}"]
    # pretraining: 9 of 10 folds of the other species; the synthetic cattle: fold 0 of the default's 3
    pre = [*data, f"data.category={args.source}", "train.folds=10", "train.val_every=1000"]
    # every species of the data files but the target, read as one set (ImageNet -> other species -> target)
    files = [args.data.resolve(), *(p.resolve() for p in args.extra_data)]
    others = sorted({c["name"] for f in files for c in json.loads(f.read_text())["categories"]} - {args.target})
    species = [*data, f"data.train=[{','.join(map(str, files))}]", f"data.category=[{','.join(others)}]",
               "train.folds=10", "train.val_every=1000"]  # fmt: skip
    if args.pretrain_epochs:
        pre.append(f"train.epochs={args.pretrain_epochs}")
        species.append(f"train.epochs={args.pretrain_epochs}")
    if args.pretrain_size:
        pre.append(f"model.input_size=[{args.pretrain_size},{args.pretrain_size}]")
        species.append(f"model.input_size=[{args.pretrain_size},{args.pretrain_size}]")
    default_cfg = ROOT / "configs" / "default.yaml"
    # the recipe ships with an ImageNet EfficientNet; its variants start from the HRNet it was first chosen with,
    # so every variant (and every command in docs/BENCHMARKS.md) names its network the same way
    hrnet = ["model.backbone=hrnet_w18_small", "model.pretrained=null", "model.input_size=[128,128]", "train.epochs=80"]
    pre, species = [*hrnet, *pre], [*hrnet, *species]

    arch_parts = ("lite", "nopsa", "psalast", "psa4", "s")  # what describes the network, so a pretraining run shares it

    def network(parts: list[str]) -> list[str]:
        """Overrides of the network parts of a variant (backbone, PSA, input size)."""
        out = []
        for part in parts:
            if part.startswith("lite"):
                out += [f"model.backbone=tf_efficientnet_{part}", "model.pretrained=imagenet"]
            elif part == "nopsa":
                out.append("model.psa=none")
            elif part == "psalast":
                out.append("model.psa_placement=last")
            elif part == "psa4":
                out.append("model.psa_placement=stage4")
            elif part.startswith("s") and part[1:].isdigit():
                out.append(f"model.input_size=[{part[1:]},{part[1:]}]")
        return out

    def variant(name: str) -> tuple[Path, list[str]]:
        """The config and overrides of a variant; pretrains (once) what it starts from."""
        if name == "default":
            return default_cfg, [f"train.epochs={args.default_epochs}"]
        parts = name.split("+")[1:]
        arch = [p for p in parts if p.startswith(arch_parts) and network([p])]
        extra = [*hrnet, *([f"train.epochs={args.recipe_epochs}"] if args.recipe_epochs else []), *network(arch)]
        # a pretraining run shares the network, not the input size: it runs at 128² or --pretrain-size (128² is
        # cheaper on thousands of animals), and the fine-tune may take another (the network is fully convolutional)
        arch = [p for p in arch if not (p.startswith("s") and p[1:].isdigit())]
        tag = "".join(f"_{p}" for p in arch)
        for part in parts:
            if part == args.source:
                source = train(f"pretrain_{args.source}{tag}", args.recipe, args.runs, 0, [*pre, *network(arch)])
                extra.append(f"model.pretrained={source}")
            elif part == "species":
                source = train(f"pretrain_species{tag}", args.recipe, args.runs, 0, [*species, *network(arch)])
                extra.append(f"model.pretrained={source}")
            elif part == "cattle":
                cattle = train("pretrain_cattle", default_cfg, args.runs, 0, [*args.set, "train.val_every=1000"])
                extra.append(f"model.pretrained={cattle}")
            elif part == "heavy":
                extra.append("augment.level=heavy")
            elif part.startswith("bb"):
                extra.append(f"train.backbone_lr={float(part[2:])}")
        return args.recipe, extra

    names = ["default", "recipe", f"recipe+{args.source}", "recipe+cattle", f"recipe+{args.source}+heavy"]
    wanted = args.only.split(",") if args.only else names
    folds = args.fold
    plans = {name: variant(name) for name in wanted}
    results: dict[str, list[dict[str, float]]] = {}
    for k in folds:
        # one run per variant and fold: `_fK` marks the fold when there are several
        tag = "_".join(t for t in (args.tag, f"f{k}" if len(folds) > 1 else "") if t)
        for name, (config, extra) in plans.items():
            run_name = name.replace("+", "_") + (f"_{tag}" if tag else "")
            run = train(run_name, config, args.runs, k, [*target, *extra, *args.tune, "train.val_every=1000"])
            results.setdefault(name, []).append(scores(run, k))

    print(f"\n{args.target}, fold {','.join(map(str, folds))} of {args.folds} (by image), fine-tuned from scratch "
          f"or from {args.source} / synthetic cattle; validation after the last epoch")  # fmt: skip
    print("| variant | fold | epochs | minutes | PCK@0.1 box | PCK@0.2 box | OKS AP |\n|---|---|---|---|---|---|---|")
    keys = ("pck_bbox@0.1", "pck_bbox@0.2", "oks_ap")
    for name, rows in results.items():
        for k, r in zip(folds, rows, strict=True):
            cells = " | ".join(f"{r.get(m, float('nan')):.3f}" for m in keys)
            print(f"| {name} | {k} | {r['epochs']:.0f} | {r['minutes']:.1f} | {cells} |")
        if len(rows) > 1:
            cells = " | ".join(_mean_sd([r.get(m, float("nan")) for r in rows]) for m in keys)
            print(f"| **{name}** | mean ± sd | | {statistics.mean(r['minutes'] for r in rows):.1f} | {cells} |")
    if args.plot:
        plot_budgets(args.plot, args.runs, wanted, folds[0], args.source)
        print(f"wrote {args.plot}")


def _fold_list(text: str) -> list[int]:
    try:
        return [int(f) for f in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected fold numbers like 1 or 0,1,2,3, got {text!r}") from None


def _is_part(token: str, source: str) -> bool:
    """Whether a word of a run name is a variant's part (what `variant` reads), not a tag."""
    if token in (source, "cattle", "heavy", "species", "nopsa") or token.startswith(("bb", "lite")):
        return True
    return token.startswith("s") and token[1:].isdigit()


def variant_runs(runs: Path, name: str, fold: int, source: str) -> list[dict[str, float]]:
    """The scores of every finished run of one variant, by epochs. A run belongs to a variant when its name is
    the variant's plus a tag (`recipe_b5`), not plus another part (`recipe_horse_b5` is not `recipe`'s)."""
    prefix = name.replace("+", "_")
    found = []
    for run in sorted(runs.iterdir()):
        rest = run.name[len(prefix) + 1 :].split("_")[0] if run.name.startswith(prefix + "_") else None
        mine = run.name == prefix or (rest is not None and not _is_part(rest, source))
        if mine and (run / f"fold{fold}" / "done.json").is_file():
            found.append(scores(run, fold))
    return sorted(found, key=lambda r: r["epochs"])


def plot_budgets(out: Path, runs: Path, variants: list[str], fold: int, source: str) -> None:
    """OKS AP and PCK@0.1 of the box against fine-tuning epochs, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for name in variants:
        points = variant_runs(runs, name, fold, source)
        for ax, metric in zip(axes, ("oks_ap", "pck_bbox@0.1"), strict=True):
            ax.plot([r["epochs"] for r in points], [r[metric] for r in points], "o-", label=name)
    for ax, title in zip(axes, ("OKS AP", "PCK@0.1 of the box"), strict=True):
        ax.set(title=title, xlabel="fine-tuning epochs")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def _mean_sd(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


if __name__ == "__main__":
    main()
