"""Keypoint metrics: PCK, OKS AP, pixel errors; metric names and which way each is better."""
