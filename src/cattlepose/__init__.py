"""cattlepose: PSA-augmented HRNet keypoint estimation for cattle and other animals."""

__version__ = "0.1.0"
