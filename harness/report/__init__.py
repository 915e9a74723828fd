"""Records → aggregated rows → markdown leaderboard (and regression comparisons)."""
