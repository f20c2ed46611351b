"""The ablation study: variants x training seeds as DVC experiments, two-level bootstrap statistics."""
