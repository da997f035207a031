"""Failure analysis of a run: the numbers, the figures and the HTML page; augmentation previews."""
