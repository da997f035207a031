"""The run folder: its layout, and the one reader and writer of its files."""
