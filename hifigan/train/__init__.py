"""Training: the loop, its schedule, EMA, checkpoints, statistics and the distribution backend."""
