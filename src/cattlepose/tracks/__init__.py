"""Animals over the frames of a video: identities (`track.py`) and each track's keypoints smoothed, with short
gaps filled (`smooth.py`). numpy and scipy only: no network, no torch."""
