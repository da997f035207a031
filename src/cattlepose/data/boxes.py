"""Box sources: where the animals of an image are, the step before their keypoints (top-down pose estimation).

- the given boxes of an annotation file (`given_boxes`): a COCO file (ground truth, or another tool's
  detections) or an ADK folder;
- the whole image (`whole_image`): each image is one animal, as in a folder of crops or the ADK2021 test set;
- a detector: any `BoxSource`, images in, instances out, each with its box, `score` and category
  (`meta["category"]`) and an `ann_id` that tells the animals of one image apart. A detector is one module
  that provides such a callable; `commands/predict.py` takes it in place of `whole_image`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from cattlepose.core.errors import UserError
from cattlepose.data.formats import adk, coco
from cattlepose.data.records import ImageSource, Instance

BoxSource = Callable[[Sequence[ImageSource]], list[Instance]]


def whole_image(images: Sequence[ImageSource]) -> list[Instance]:
    """One animal per image, the image its region."""
    return [Instance.in_image(source) for source in images]


def holds_boxes(path: Path) -> bool:
    """An annotation file (COCO), or an ADK folder (an `annotations/` folder inside), rather than a folder of
    images."""
    return path.is_file() or (path / "annotations").is_dir()


def given_boxes(path: Path, num_keypoints: int, images: Path | None = None) -> list[Instance]:
    """Every annotated animal of a COCO file (its boxes; keypoints are not read) or of an ADK folder (its
    boxes, or the whole image where ADK's are placeholders), in file order. `images`: their folder, when not
    where the annotations say."""
    if path.is_dir():
        instances: list[Instance] = list(adk.read(path, num_keypoints, images=images))
    else:
        instances = list(coco.read_detailed(path, num_keypoints, images=images, boxes_only=True)[0])
    if not instances:
        raise UserError("no annotations with boxes to predict", path=path, field="annotations")
    return instances
