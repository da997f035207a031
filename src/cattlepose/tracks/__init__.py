"""Animals through time: identities over the frames of a video (`track.py`), each track's keypoints smoothed with
short gaps filled (`smooth.py`), and gait signals (`gait.py`, `gait_io.py`). numpy and scipy only: no torch."""
