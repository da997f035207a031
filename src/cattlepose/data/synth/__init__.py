"""Procedural synthetic cattle: anatomy, pose, farms, occluders and the renderer (see `render`)."""

from __future__ import annotations

from cattlepose.data.synth.render import ADK17, Rendered, Scene, render, render_animal, sample_scene

__all__ = ["ADK17", "Rendered", "Scene", "render", "render_animal", "sample_scene"]
