"""A keypoint training set cut from synthetic walking-cattle videos: the frames as a COCO keypoints file.

The keypoint runs behind `video_e2e.py` were trained on synthetic stills (one animal filling a crop) and lose
accuracy on video frames: smaller animals, walking poses, MPEG-4 artefacts. This writes the frames of
`cattlepose synth-video` clips (decoded back through the codec, so the artefacts are the ones `cattlepose video`
sees) with every animal's box and keypoints from truth.json, one fold group per video, so that
`cattlepose train` can be given them:

    .venv/bin/python benchmarks/video_frames.py OUT --seeds 10-17 [--every 5] [--seconds 12] [--animals 3]
    cattlepose train -c configs/default.yaml -s data.train=OUT/annotations.json -s data.schema=adk17 ...

The seeds must not be the ones `video_e2e.py` scores (0, 1, 2 by default). The category is the one
`synth-herd` writes, so a keypoint run trained here pairs with a detector trained on `synth-herd` scenes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from cattlepose.core.schema import load_schema
from cattlepose.data.formats import coco
from cattlepose.data.records import Sample
from cattlepose.data.synth.herd import CATEGORY
from cattlepose.data.synth_video import read_truth, synthesize_video


def parse_seeds(text: str) -> list[int]:
    """ "10-17" or "3,5,9"."""
    if "-" in text:
        a, b = text.split("-", 1)
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",") if s.strip()]


def frames_to_samples(video_dir: Path, images: Path, every: int, min_labelled: int) -> list[Sample]:
    """Every `every`-th frame of video_dir/walk.mp4 written as a JPEG under `images`, with its animals."""
    truth = read_truth(video_dir / "truth.json")
    by_frame: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for t in truth.tracks.values():
        for f, box, kp in zip(t.frames, t.boxes, t.keypoints, strict=True):
            if f % every == 0 and (kp[:, 2] > 0).sum() >= min_labelled and box[2] > 1 and box[3] > 1:
                by_frame.setdefault(int(f), []).append((t.track, box, kp))
    cap = cv2.VideoCapture(str(truth.video))
    samples: list[Sample] = []
    f = -1
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        f += 1
        if f not in by_frame:
            continue
        name = f"{video_dir.name}_{f:05d}"
        path = images / f"{name}.jpg"
        cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        for track, box, kp in by_frame[f]:
            k = kp.copy()
            k[k[:, 2] == 0] = 0.0  # outside the frame: unlabelled
            samples.append(Sample(
                path, box, name, truth.width, truth.height, ann_id=str(track), keypoints=k,
                group=video_dir.name, meta={"category": CATEGORY, "farm_name": video_dir.name},
            ))  # fmt: skip
    cap.release()
    return samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seeds", default="10-17")
    ap.add_argument("--every", type=int, default=5, help="keep every n-th frame")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--animals", type=int, default=3)
    ap.add_argument("--min-labelled", type=int, default=6, help="in-frame keypoints for an animal to be kept")
    args = ap.parse_args()
    images = args.out / "images"
    images.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    samples: list[Sample] = []
    for seed in parse_seeds(args.seeds):
        vdir = args.out / "videos" / f"seed{seed}"
        if not (vdir / "truth.json").is_file():
            synthesize_video(vdir, animals=args.animals, seconds=args.seconds, seed=seed)
        got = frames_to_samples(vdir, images, args.every, args.min_labelled)
        print(f"seed {seed}: {len({s.image_id for s in got})} frames, {len(got)} animals", flush=True)
        samples += got
    coco.write(samples, args.out / "annotations.json", load_schema("adk17"))
    print(f"{len(samples)} animals in {args.out / 'annotations.json'} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
