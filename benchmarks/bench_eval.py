"""Scoring N images with all scorers: batched + shared backbones vs one image at a time per scorer.

The paper's evaluation code scores one image per call for each reward model. Here the same
scorers (real architectures, small random weights saved in the real formats so no download is
needed: CLIP for PickScore / CLIP score / aesthetic head, open_clip for HPSv2, BLIP (ViT-B, BERT-tiny)
for ImageReward, every vision tower at 64 px, plus the ground truth) score the same images both ways
in one run.
    python benchmarks/bench_eval.py [--images 256 --batch 32]
Prints both throughputs and the ratio (target >= 4x).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def build_models(d: Path) -> dict:
    import open_clip
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from seppo.evaluation.scorers.clip_family import aesthetic_mlp
    from seppo.evaluation.scorers.imagereward import build_model
    from seppo.models.tokenizer import build_clip_tokenizer

    torch.manual_seed(0)
    cfg = CLIPConfig(text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
                     vision_config=dict(image_size=64, patch_size=8, hidden_size=64, intermediate_size=128,
                                        num_hidden_layers=2, num_attention_heads=4), projection_dim=32)
    CLIPModel(cfg).save_pretrained(d / "clip")
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}),
                  tokenizer=build_clip_tokenizer(str(d / "tok"), 77)).save_pretrained(d / "clip")
    torch.save(aesthetic_mlp(32).state_dict(), d / "aes.pth")
    oc = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
          "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}
    (d / "bench-tiny-vit.json").write_text(json.dumps(oc))
    open_clip.add_model_config(d / "bench-tiny-vit.json")
    torch.save({"state_dict": open_clip.create_model("bench-tiny-vit").state_dict()}, d / "hps.pt")
    words = ["one", "two", "three", "large", "small", "red", "blue", "circle", "square", "on", "a", "background"]
    (d / "bert").mkdir()
    (d / "bert/vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words) + "\n")
    med = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 2,
           "max_position_embeddings": 64, "vocab_size": len(words) + 7, "type_vocab_size": 2, "pad_token_id": 0,
           "hidden_act": "gelu", "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.0,
           "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02, "encoder_width": 768,
           "add_cross_attention": True, "model_type": "bert"}
    (d / "med.json").write_text(json.dumps(med))
    torch.save(build_model(d / "med.json", vit="base", image_size=64).state_dict(), d / "ir.pt")
    return {"pickscore_model": str(d / "clip"), "pickscore_processor": str(d / "clip"), "clip_model": str(d / "clip"),
            "aesthetic_head": str(d / "aes.pth"), "hps_v21_checkpoint": str(d / "hps.pt"),
            "hps_architecture": "bench-tiny-vit", "imagereward_checkpoint": str(d / "ir.pt"),
            "imagereward_med_config": str(d / "med.json"), "imagereward_tokenizer": str(d / "bert"),
            "imagereward_vit": "base", "imagereward_image_size": 64}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    from seppo.evaluation.scorers import build_scorers

    names = ["shapeland_utility", "pickscore_x100", "clip_l14_x100", "aesthetic_laion", "hps_v21_x100", "imagereward"]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(args.images)]
    prompts = ["one large red circle on the left on a white background"] * args.images
    with tempfile.TemporaryDirectory() as tmp:
        models = build_models(Path(tmp))
        t0 = time.perf_counter()
        scorers = build_scorers(names, models, batch_size=args.batch)
        batched = {s.name: s.score(images, prompts) for s in scorers}
        t_batched = time.perf_counter() - t0

        t0 = time.perf_counter()
        single = {}
        for name in names:  # one model per scorer, no shared backbone, one image per call
            (s,) = build_scorers([name], models, batch_size=1)
            single[name] = np.array([s.score([im], [p])[0] for im, p in zip(images, prompts)])
        t_single = time.perf_counter() - t0
    worst = max(float(np.max(np.abs(batched[n] - single[n]))) for n in names)
    print(f"{args.images} images x {len(names)} scorers ({', '.join(names)})")
    print(f"one image at a time per scorer : {args.images / t_single:8.1f} images/s")
    print(f"batched ({args.batch}), shared backbones : {args.images / t_batched:8.1f} images/s")
    print(f"ratio: {t_single / t_batched:.1f}x (target >= 4x); max |score difference| {worst:.2e}")


if __name__ == "__main__":
    main()
