"""Procedural synthetic cattle: anatomy, pose, farms, occluders and the renderer (see `render`)."""
