"""`cattlepose validate`: every problem of a submission CSV, a wide one against its template, a long one on its
own (`data/formats/validate.py`)."""

from __future__ import annotations

from pathlib import Path

from cattlepose.data.formats.folder import image_sizes
from cattlepose.data.formats.validate import validate_submission


def run_validate(submission: Path, template: Path | None, images: Path | None) -> list[str]:
    """One line per problem; empty when the submission is valid. `images`: also check coordinates lie inside."""
    return validate_submission(submission, template, image_sizes(images) if images else None)
