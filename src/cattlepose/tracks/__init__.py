"""Animals through time: tracking, smoothing and gait signals (between metrics and runs)."""
