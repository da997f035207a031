"""What a run's data fingerprint (data/fingerprint.py, `data.json`) costs, beside what training does anyway.

- reading the annotations (every start does it);
- decoding every image (a run's first start does it, `require_decodable`);
- the fingerprint at a first start: every image's bytes hashed;
- the fingerprint at a resume or `--collect`: files stat'ed, digests kept from the record;
- the same after every image was touched (a copied data set with new times): every image hashed again.

The page cache is warm for every row after the first decode (the images were just read); a cold disk adds its
reading time to the decode and the first-start rows alike.

    .venv/bin/python benchmarks/bench_fingerprint.py [--data FILE_OR_FOLDER ... | --synthetic N] [--rounds 3]

Default data: the shared Animal-Pose sets (../shared/datasets, two COCO files, 4,074 photographs) when present,
else (or with `--synthetic N`) a synthetic set of N crops, on which the touched row is measured too.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cattlepose.core.config import load_config
from cattlepose.core.ui import Log
from cattlepose.data.check import require_decodable
from cattlepose.data.fingerprint import take
from cattlepose.data.source import load_training_data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def best_of(rounds: int, fn) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="*", type=Path, help="COCO files (one set) or one ADK folder or CSV file")
    ap.add_argument("--format", default=None, help="adk | coco | csv (default: coco for .json, else adk)")
    ap.add_argument("--synthetic", type=int, default=None, help="a synthetic set of this many crops")
    ap.add_argument("--rounds", type=int, default=3, help="best of this many rounds per row")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or ([] if args.synthetic else sorted(SHARED.glob("animalpose_*/annotations.json")))
        synthetic = not data
        if synthetic:
            from cattlepose.data.synthetic import synthesize

            synthesize(Path(tmp) / "synth", n_train=args.synthetic or 400, n_test=0, seed=0)
            data = [Path(tmp) / "synth" / "train"]
        fmt = args.format or ("coco" if data[0].suffix == ".json" else "adk")
        train = f"[{','.join(map(str, data))}]" if len(data) > 1 else str(data[0])
        cfg = load_config(None, [f"data.train={train}", f"data.format={fmt}", "data.schema=from_data",
                                 "data.outside=drop"])  # fmt: skip
        log = Log(quiet=True)
        read = best_of(args.rounds, lambda: load_training_data(cfg, log))
        samples, _ = load_training_data(cfg, log)
        decode = best_of(1, lambda: require_decodable(samples))
        first = best_of(args.rounds, lambda: take(samples))
        record = take(samples)
        resume = best_of(args.rounds, lambda: take(samples, previous=record))
        images = sorted({s.image for s in samples})
        size = sum(p.stat().st_size for p in images)

        def touched() -> None:
            for p in images:
                os.utime(p)  # new times, same bytes: every image is hashed again, and found the same
            take(samples, previous=record)

        retouch = best_of(1, touched) if synthetic else None  # never touch a user's or the shared files
    print(f"data: {', '.join(map(str, data))}: {len(samples)} animals, {len(images)} images, {size / 1e6:.1f} MB")
    print("| step | seconds |")
    print("|---|---|")
    print(f"| read the annotations | {read:.3f} |")
    print(f"| decode every image (first start) | {decode:.3f} |")
    print(f"| fingerprint, first start (hash every image) | {first:.3f} |")
    print(f"| fingerprint, resume (stat only) | {resume:.3f} |")
    if retouch is not None:
        print(f"| fingerprint after touching every image (hash again) | {retouch:.3f} |")
    print(f"fingerprint first start / decoding: {first / decode:.3f}; resume / first start: {resume / first:.3f}")


if __name__ == "__main__":
    main()
