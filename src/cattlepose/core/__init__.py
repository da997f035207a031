"""The base layer: errors, safe files, console output, the config, keypoint schemas, the backbone table."""
