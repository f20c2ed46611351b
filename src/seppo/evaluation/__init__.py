"""Evaluation: prompt sets, image generation per (checkpoint, prompt, seed), scorers, statistics."""
