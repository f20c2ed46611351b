"""Training: losses, reference selection, reference samples, the round trainer."""
