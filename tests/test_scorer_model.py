"""The in-project PickScore: its losses by hand, and a trained folder that the real scorer loads."""

import json
import math

import numpy as np
import pytest
import torch

from seppo.config import IngestConfig, ScorerModelConfig, WorldConfig
from seppo.data.ingest import run_ingest
from seppo.evaluation import pickscore_train as P
from seppo.evaluation.scorers import build_scorers
from seppo.world.stage import run_world

TINY = dict(width=32, heads=2, vision_layers=1, text_layers=1, projection_dim=16, contrastive_steps=4,
            contrastive_batch=16, preference_steps=3, preference_batch=8, warmup_steps=1, holdout_share=0.3)


def test_preference_loss_is_pickscores_two_way_cross_entropy():
    s_w, s_l = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 3.0])
    # softmax([2, 1])[0] = 1 / (1 + e^-1); softmax([0, 3])[0] = 1 / (1 + e^3)
    expected = 0.5 * (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(3)))
    assert P.preference_loss(s_w, s_l).item() == pytest.approx(expected, rel=1e-6)


def test_contrastive_loss_counts_identical_captions_as_positives():
    img = torch.eye(3)[:, :3]
    txt = torch.eye(3)[:, :3]
    # rows 0 and 1 share a caption: each image's target is split over texts 0 and 1
    logits = 10.0 * img @ txt.T
    target = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    by_hand = -(target * torch.log_softmax(logits, 1)).sum(1).mean()
    got = P.contrastive_loss(img, txt, torch.tensor(10.0), ["a", "a", "b"])
    assert got.item() == pytest.approx(by_hand.item(), rel=1e-6)  # symmetric: logits.T gives the same here
    distinct = P.contrastive_loss(img, txt, torch.tensor(10.0), ["a", "b", "c"])
    assert distinct.item() < got.item()  # one-hot targets on a perfect diagonal are easier to satisfy


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("scorer-world")
    run_world(WorldConfig(train_prompts=10, pairs_per_prompt=4, eval_prompts=3, shard_rows=20, web_size=40,
                          utility_check_renders=20, tie_prob=0.0), root / "world", root / "world.json")
    run_ingest(IngestConfig(source=str(root / "world/pickapic")), root / "ingest", root / "ingest.json")
    return root


def _run(world, out, **kw):
    cfg = ScorerModelConfig(**{**TINY, **kw})
    return P.run_scorer_model(cfg, 32, world / "world/web", world / "ingest", world / "world/pairs_truth.parquet",
                              out, out.parent / f"{out.name}.json")


def test_trained_folder_loads_as_pickscore_and_reproduces(world, tmp_path, capfd):
    summary = _run(world, tmp_path / "ps")
    steps = TINY["contrastive_steps"] + TINY["preference_steps"]
    err = capfd.readouterr().err  # a progress bar over both phases' steps
    assert "scorer-model: 100%" in err and f"{steps}/{steps}" in err
    held = summary["held_out"]
    assert summary["pairs_train"] > 0 and summary["pairs_held_out"] > 0
    assert held["u_vs_label"]["pairs"] == summary["pairs_held_out"]
    for key in ("pickscore_vs_label", "pickscore_vs_u", "pickscore_vs_true_utility", "label_vs_true_utility"):
        assert held[key]["agreement"] is None or 0.0 <= held[key]["agreement"] <= 1.0
    assert json.loads((tmp_path / "ps.json").read_text()) == summary
    assert not (tmp_path / "ps/_tokenizer").exists()

    # the real scorer code path (CLIPProcessor + CLIPModel.from_pretrained) on the saved folder
    (scorer,) = build_scorers(["pickscore_x100"], {"pickscore_model": str(tmp_path / "ps"),
                                                   "pickscore_processor": str(tmp_path / "ps")})
    pairs = P.load_pairs(world / "ingest")
    caps, imgs = pairs["caption"][:5], list(pairs["w"][:5])
    got = scorer.score(imgs, caps)
    from transformers import CLIPModel, CLIPProcessor

    proc = CLIPProcessor.from_pretrained(tmp_path / "ps")
    tr = P._Trainer(ScorerModelConfig(**TINY), CLIPModel.from_pretrained(tmp_path / "ps").eval(), proc.tokenizer)
    mine, _ = P.pair_scores(tr, caps, pairs["w"][:5], pairs["l"][:5])
    np.testing.assert_allclose(got, mine, atol=1e-4)  # the processor's preprocessing == the trainer's

    again = _run(world, tmp_path / "ps2")
    assert again == summary and "seconds_total" not in summary  # wall clock only in the timing file
    assert (tmp_path / "ps.json").read_bytes() == (tmp_path / "ps2.json").read_bytes()
    assert json.loads((tmp_path / "timing/ps.json").read_text())["seconds_total"] > 0


def test_a_holdout_that_leaves_nothing_to_train_on_is_refused(world, tmp_path):
    with pytest.raises(ValueError, match="holdout_share"):
        _run(world, tmp_path / "bad", holdout_share=0.999999)
    assert not (tmp_path / "bad").exists()
