"""Pictures shared by the stages that show images: deterministic captioned grids (evaluation, reports)."""
