"""One sha256-to-seed rule (seppo.seeding); committed results depend on its exact values."""

import numpy as np

from seppo.data.cache import row_rng
from seppo.evaluation.pickscore_train import _held_out
from seppo.models.pipeline import prompt_seed
from seppo.seeding import MASK_63, digest_u64, named_rng, seed63, unit_interval
from seppo.training.plan import noise_seed, ref_sample_keys
from seppo.training.selection import selection_rng


def test_values_are_pinned():
    # values computed by the five copies this module replaced (main at d50719f)
    assert seed63("noise", 0, 1, 2, 3) == noise_seed(0, 1, 2, 3) == 1424400643980302723
    assert seed63(7, "abc") == 7662819511601883764
    assert prompt_seed("a red circle", 0) == 6363194578575949069
    assert prompt_seed("x", 5) == 7346438448797943954
    assert selection_rng(0, 1).integers(2**62) == 1785177144934224302
    assert selection_rng(3, 2).integers(2**62) == 821978747307373380
    assert row_rng(0, "uid-1").integers(2**62) == 4439689839314672239
    assert row_rng(2, "k").random() == 0.24434312420972115
    assert [_held_out(c, 0, 0.5) for c in "abcdef"] == [True, False, True, False, True, False]


def test_rule_by_hand():
    import hashlib

    d = hashlib.sha256(b"select\x000\x001").digest()
    assert digest_u64("select", 0, 1) == int.from_bytes(d[:8], "little")
    assert seed63("select", 0, 1) == digest_u64("select", 0, 1) & MASK_63 < 2**63
    assert unit_interval("select", 0, 1) == digest_u64("select", 0, 1) / 2**64
    assert named_rng("select", 0, 1).random() == np.random.default_rng(digest_u64("select", 0, 1)).random()
    # parts are joined, not concatenated: ("ab", "c") and ("a", "bc") differ
    assert digest_u64("ab", "c") != digest_u64("a", "bc")


def test_reference_sample_seeds_unchanged():
    assert ref_sample_keys(["p", "q"], ["u1", "u2"], "per_winner", 2, 1, 0)[2] == [
        7911071820105884360, 9047473696067642020]
    assert ref_sample_keys(["p", "p"], ["u1", "u2"], "per_prompt", 2, 1, 0)[2] == [
        8378734362176303595, 2349595667551391669]
