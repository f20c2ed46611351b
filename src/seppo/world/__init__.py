"""Shapeland: the embedded default world.

A procedurally generated text-to-image world with a ground truth. Captions are composed from
attributes (shape, colour, count, size, position, background); images are rendered from them; a
ground-truth utility scores any image against its caption from the pixels alone.
"""
