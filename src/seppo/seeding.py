"""Seeds derived from names: sha256 of the parts joined by NUL, first 8 bytes little-endian.

The one rule behind every per-item seed of the pipeline (a sample, a row's crop, a round's noise,
the reference selection, the scorer's held-out split), so each draw depends only on what it is
named by, never on batch composition, order or process count. Committed results depend on these
exact values: tests/test_seeding.py pins a few.
"""

from __future__ import annotations

import hashlib

import numpy as np

MASK_63 = 0x7FFF_FFFF_FFFF_FFFF  # torch.Generator.manual_seed takes a signed 64-bit value


def digest_u64(*parts) -> int:
    """Unsigned 64-bit integer from sha256("\\x00".join(str(p) for p in parts))."""
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def seed63(*parts) -> int:
    """A non-negative seed below 2**63 (valid for torch and numpy generators)."""
    return digest_u64(*parts) & MASK_63


def named_rng(*parts) -> np.random.Generator:
    """A numpy generator seeded by the full 64-bit digest of ``parts``."""
    return np.random.default_rng(digest_u64(*parts))


def unit_interval(*parts) -> float:
    """A number in [0, 1) from ``parts`` (for seeded, order-free splits)."""
    return digest_u64(*parts) / 2**64
