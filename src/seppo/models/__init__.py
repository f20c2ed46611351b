"""Models: the offline CLIP tokenizer, tiny SD components, base-model pretraining, loading."""
