"""The ``scorer_model`` stage: a small PickScore trained here, so the embedded default has a real scorer.

PickScore (Kirstain et al. 2023) is a CLIP model fine-tuned on Pick-a-Pic preferences: the score of
an image is ``logit_scale * cos(text, image)`` and training minimises the cross-entropy between the
softmax over the pair's two scores and the human label (0.5 / 0.5 for ties). We do the same at Shapeland's
scale, in two phases:

1. contrastive: a tiny ``CLIPModel`` (ViT on 32 px, the project's CLIP tokenizer) trained with the
   symmetric InfoNCE loss on the world's web corpus (identical captions in a batch count as positives);
2. preference: PickScore's objective on the ingested winner/loser pairs, a held-out share of the
   captions kept out to measure agreement.

The result is saved exactly as PickScore is published (``CLIPModel.save_pretrained`` + a
``CLIPProcessor`` folder), so the ``pickscore_x100`` scorer loads it through the same code as
``yuvalkirstain/PickScore_v1``. Agreement on the held-out pairs is measured against the annotator's
label, the ground-truth utility ``u`` (pixels) and the simulation's true utility, next to the same
numbers for ``u`` itself and for the contrastive-only model.
"""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import numpy as np

from ..config import ScorerModelConfig
from ..io_utils import atomic_dir, write_json
from ..layout import timing_path
from ..optim import adamw
from ..progress import progress
from ..seeding import unit_interval

MEAN = [0.48145466, 0.4578275, 0.40821073]  # CLIP's normalisation, as in CLIPImageProcessor
STD = [0.26862954, 0.26130258, 0.27577711]


def build_clip(cfg: ScorerModelConfig, image_size: int, vocab_size: int):
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=cfg.width, intermediate_size=4 * cfg.width,
                         num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.heads,
                         max_position_embeddings=cfg.max_tokens),
        vision_config=dict(image_size=image_size, patch_size=cfg.patch_size, hidden_size=cfg.width,
                           intermediate_size=4 * cfg.width, num_hidden_layers=cfg.vision_layers,
                           num_attention_heads=cfg.heads),
        projection_dim=cfg.projection_dim)
    return CLIPModel(config)


def build_processor(work_dir: Path, image_size: int, max_tokens: int):
    from transformers import CLIPImageProcessor, CLIPProcessor

    from ..models.tokenizer import build_clip_tokenizer

    images = CLIPImageProcessor(size={"shortest_edge": image_size},
                                crop_size={"height": image_size, "width": image_size},
                                image_mean=MEAN, image_std=STD)
    return CLIPProcessor(image_processor=images, tokenizer=build_clip_tokenizer(work_dir, max_tokens))


def pixel_values(images: np.ndarray):
    """CLIPImageProcessor's rescale + normalise for images already at the model's size (uint8 NHWC)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _held_out(caption: str, seed: int, share: float) -> bool:
    return unit_interval(seed, caption) < share


def load_pairs(ingest_dir: Path) -> dict[str, np.ndarray | list]:
    """Winner/loser pairs from the ingest stage (the rows that passed every check)."""
    import pyarrow.parquet as pq

    win = pq.read_table(ingest_dir / "winners.parquet",
                        columns=["ranking_id", "caption", "image", "source_field"]).to_pandas()
    los = pq.read_table(ingest_dir / "losers.parquet", columns=["ranking_id", "image"]).to_pandas()
    pairs = win.merge(los, on="ranking_id", suffixes=("_w", "_l"), validate="one_to_one")
    if pairs.empty:
        raise ValueError(f"{ingest_dir}: no winner/loser pairs (losers.parquet empty or ranking_id mismatch)")
    return {"ranking_id": pairs.ranking_id.to_numpy(), "caption": pairs.caption.tolist(),
            "winner_side": pairs.source_field.map({"jpg_0": 0, "jpg_1": 1}).to_numpy(),
            "w": np.stack([_decode(b) for b in pairs.image_w]), "l": np.stack([_decode(b) for b in pairs.image_l])}


class _Trainer:
    def __init__(self, cfg: ScorerModelConfig, model, tokenizer):
        import torch

        self.cfg, self.model, self.tok, self.torch = cfg, model, tokenizer, torch
        self._ids: dict[str, tuple] = {}

    def text(self, captions: list[str]):
        torch = self.torch
        missing = [c for c in dict.fromkeys(captions) if c not in self._ids]
        if missing:
            enc = self.tok(missing, padding="max_length", truncation=True, max_length=self.cfg.max_tokens,
                           return_tensors="pt")
            for i, c in enumerate(missing):
                self._ids[c] = (enc["input_ids"][i], enc["attention_mask"][i])
        ids = torch.stack([self._ids[c][0] for c in captions])
        mask = torch.stack([self._ids[c][1] for c in captions])
        return _unit(self.model.get_text_features(input_ids=ids, attention_mask=mask))

    def images(self, images: np.ndarray):
        return _unit(self.model.get_image_features(pixel_values=pixel_values(images)))

    def scale(self):
        return self.model.logit_scale.exp().clamp(max=100.0)


def _unit(x):
    x = x if hasattr(x, "norm") else x.pooler_output
    return x / x.norm(dim=-1, keepdim=True)


def contrastive_loss(img, txt, scale, captions: list[str]):
    """Symmetric InfoNCE; images of the same caption are all positives (soft targets)."""
    import torch
    import torch.nn.functional as F

    codes = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    ids = torch.tensor([codes[c] for c in captions])
    same = (ids[:, None] == ids[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    logits = scale * img @ txt.T
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def preference_loss(s_w, s_l):
    """PickScore's objective for strict preferences: -log softmax([s_w, s_l])[0]."""
    import torch.nn.functional as F

    return -F.logsigmoid(s_w - s_l).mean()


def _optimizer(model, lr: float, steps: int, warmup: int, impl: str):
    import torch

    opt = adamw(model.parameters(), lr, 0.1, impl)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / max(warmup, 1)) * 0.5 * (1 + np.cos(np.pi * min(i / steps, 1.0))))
    return opt, sched


def _step(model, opt, sched, loss) -> float:
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    return float(loss.detach())


def pair_scores(tr: _Trainer, captions, a: np.ndarray, b: np.ndarray, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """100 x cosine of both images of each pair (the pickscore_x100 scale)."""
    import torch

    out_a, out_b = [], []
    tr.model.eval()
    with torch.no_grad():
        for i in range(0, len(captions), batch):
            t = tr.text(captions[i : i + batch])
            out_a.append((100 * (tr.images(a[i : i + batch]) * t).sum(-1)).numpy())
            out_b.append((100 * (tr.images(b[i : i + batch]) * t).sum(-1)).numpy())
    tr.model.train()
    return np.concatenate(out_a), np.concatenate(out_b)


def _agreement(pref_a: np.ndarray, truth_a: np.ndarray, truth_b: np.ndarray, margin: float) -> dict:
    """Share of pairs whose truth differs by more than ``margin`` where ``pref_a`` picks the better one."""
    keep = np.abs(truth_a - truth_b) > margin
    agree = pref_a[keep] == (truth_a[keep] > truth_b[keep])
    return {"agreement": round(float(agree.mean()), 4) if keep.any() else None, "pairs": int(keep.sum())}


def run_scorer_model(cfg: ScorerModelConfig, image_size: int, web_dir: Path, ingest_dir: Path,
                     truth_path: Path, out_dir: Path, metrics_path: Path) -> dict:
    import pandas as pd
    import torch

    from ..world.utility import utilities

    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    web_images = np.load(web_dir / "images.npy", mmap_mode="r")
    web_captions = pd.read_parquet(web_dir / "captions.parquet", columns=["caption"]).caption.tolist()
    if len(web_captions) != len(web_images):
        raise ValueError(f"{web_dir}: {len(web_images)} images but {len(web_captions)} captions")
    if web_images.shape[1] != image_size:
        raise ValueError(f"{web_dir}/images.npy: images are {web_images.shape[1]} px, world.image_size is {image_size}")
    pairs = load_pairs(ingest_dir)
    held = np.array([_held_out(c, cfg.seed, cfg.holdout_share) for c in pairs["caption"]])
    if held.all() or not held.any():
        raise ValueError(f"holdout_share {cfg.holdout_share} leaves no training or no held-out pairs")

    with atomic_dir(out_dir) as tmp:
        processor = build_processor(tmp / "_tokenizer", image_size, cfg.max_tokens)
        model = build_clip(cfg, image_size, len(processor.tokenizer)).train()
        tr = _Trainer(cfg, model, processor.tokenizer)

        bar = progress(cfg.contrastive_steps + cfg.preference_steps, "scorer-model", unit="step")
        opt, sched = _optimizer(model, cfg.contrastive_lr, cfg.contrastive_steps, cfg.warmup_steps, cfg.adamw_impl)
        c_losses = []
        for _ in range(cfg.contrastive_steps):
            idx = np.sort(rng.choice(len(web_captions), cfg.contrastive_batch, replace=False))
            caps = [web_captions[i] for i in idx]
            loss = contrastive_loss(tr.images(web_images[idx]), tr.text(caps), tr.scale(), caps)
            c_losses.append(_step(model, opt, sched, loss))
            bar.set_postfix(phase="contrastive", loss=f"{c_losses[-1]:.3f}", refresh=False)
            bar.update()

        ev_caps = [c for c, h in zip(pairs["caption"], held) if h]
        ev_w, ev_l = pairs["w"][held], pairs["l"][held]
        before = pair_scores(tr, ev_caps, ev_w, ev_l)

        train_idx = np.flatnonzero(~held)
        opt, sched = _optimizer(model, cfg.preference_lr, cfg.preference_steps, cfg.warmup_steps, cfg.adamw_impl)
        p_losses = []
        for _ in range(cfg.preference_steps):
            idx = rng.choice(train_idx, min(cfg.preference_batch, len(train_idx)), replace=False)
            caps = [pairs["caption"][i] for i in idx]
            t = tr.text(caps)
            s_w = tr.scale() * (tr.images(pairs["w"][idx]) * t).sum(-1)
            s_l = tr.scale() * (tr.images(pairs["l"][idx]) * t).sum(-1)
            p_losses.append(_step(model, opt, sched, preference_loss(s_w, s_l)))
            bar.set_postfix(phase="preference", loss=f"{p_losses[-1]:.3f}", refresh=False)
            bar.update()
        bar.close()
        after = pair_scores(tr, ev_caps, ev_w, ev_l)

        model.eval()
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        shutil.rmtree(tmp / "_tokenizer")

    # agreement on held-out pairs
    u_w, u_l = utilities(list(ev_w), ev_caps), utilities(list(ev_l), ev_caps)
    truth = pd.read_parquet(truth_path).set_index("ranking_id")
    tu = truth.loc[pairs["ranking_id"][held], ["true_utility_0", "true_utility_1"]].to_numpy()
    side = pairs["winner_side"][held]
    t_w, t_l = tu[np.arange(len(side)), side], tu[np.arange(len(side)), 1 - side]
    ones, zeros = np.ones(held.sum()), np.zeros(held.sum())
    summary = {
        "architecture": {"width": cfg.width, "vision_layers": cfg.vision_layers, "text_layers": cfg.text_layers,
                         "patch_size": cfg.patch_size, "image_size": image_size,
                         "parameters": int(sum(p.numel() for p in model.parameters()))},
        "pairs_train": int((~held).sum()), "pairs_held_out": int(held.sum()),
        "contrastive_loss_first_last": [round(float(np.mean(c_losses[:20])), 4), round(float(np.mean(c_losses[-20:])), 4)],
        "preference_loss_first_last": [round(float(np.mean(p_losses[:20])), 4), round(float(np.mean(p_losses[-20:])), 4)],
        "held_out": {
            # rows: who ranks the pair; columns: against what (label = the annotator's choice)
            "pickscore_vs_label": _agreement(after[0] > after[1], ones, zeros, 0.5),
            "pickscore_vs_u": _agreement(after[0] > after[1], u_w, u_l, cfg.truth_margin),
            "pickscore_vs_true_utility": _agreement(after[0] > after[1], t_w, t_l, cfg.truth_margin),
            "contrastive_only_vs_label": _agreement(before[0] > before[1], ones, zeros, 0.5),
            "contrastive_only_vs_u": _agreement(before[0] > before[1], u_w, u_l, cfg.truth_margin),
            "u_vs_label": _agreement(u_w > u_l, ones, zeros, 0.5),
            "label_vs_true_utility": _agreement(np.ones(held.sum(), bool), t_w, t_l, cfg.truth_margin),
            "truth_margin": cfg.truth_margin,
        },
    }
    write_json(metrics_path, summary)  # a dep of the report: nothing run-dependent in it
    write_json(timing_path(metrics_path), {"seconds_total": round(time.perf_counter() - t0, 1)})
    return summary
