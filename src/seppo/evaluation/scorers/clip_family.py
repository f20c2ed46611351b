"""Scorers on Hugging Face CLIP models: PickScore, CLIP score and the LAION aesthetic predictor.

- ``pickscore_x100``: 100 x cosine(image, prompt) in PickScore's CLIP-H (processor
  laion/CLIP-ViT-H-14-laion2B-s32B-b79K, model yuvalkirstain/PickScore_v1). PickScore's own code
  multiplies by the model's logit scale, which is 100 for the released model; we state the 100.
- ``clip_l14_x100``: CLIPScore = max(100 x cosine, 0) with openai/clip-vit-large-patch14.
- ``aesthetic_laion``: the LAION improved aesthetic predictor (an MLP, raw 1-10 scale) on the
  L2-normalised CLIP-L/14 image embedding; it shares the CLIP-L backbone with ``clip_l14_x100``.
"""

from __future__ import annotations

import numpy as np

from .base import MissingWeights, register, resolve


class ClipBackbone:
    """One CLIP model + processor; embeddings are computed in batches and cached per call."""

    def __init__(self, model_path, processor_path, device: str, batch_size: int):
        import torch
        from transformers import CLIPModel, CLIPProcessor

        self.processor = CLIPProcessor.from_pretrained(processor_path)
        if len(self.processor.tokenizer) < 1000:  # transformers 5 returns an empty tokenizer silently
            raise MissingWeights(f"{processor_path}: no usable CLIP tokenizer files (vocab.json/merges.txt)")
        self.model = CLIPModel.from_pretrained(model_path, use_safetensors=None).eval().to(device)
        self.device, self.batch_size, self.torch = device, batch_size, torch
        self._cache: dict = {}

    def _run(self, kind, items, fn):
        """Normalised embeddings; the same images/prompts are embedded once for all scorers."""
        import hashlib

        h = hashlib.sha1(kind.encode())
        for x in items:
            h.update(x.encode() if isinstance(x, str) else np.ascontiguousarray(x).tobytes())
        key = h.hexdigest()
        if key not in self._cache:
            out = []
            with self.torch.no_grad():
                for i in range(0, len(items), self.batch_size):
                    out.append(_features(fn(items[i : i + self.batch_size])).float().cpu())
            emb = self.torch.cat(out)
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = emb / emb.norm(dim=-1, keepdim=True)
        return self._cache[key]

    def image_embeds(self, images):
        def fn(batch):
            px = self.processor(images=[np.asarray(b) for b in batch], return_tensors="pt")["pixel_values"]
            return self.model.get_image_features(pixel_values=px.to(self.device))

        return self._run("img", images, fn)

    def text_embeds(self, prompts):
        def fn(batch):
            tok = self.processor(text=list(batch), padding="max_length", truncation=True,
                                 max_length=self.processor.tokenizer.model_max_length, return_tensors="pt")
            return self.model.get_text_features(input_ids=tok["input_ids"].to(self.device),
                                                attention_mask=tok["attention_mask"].to(self.device))

        return self._run("txt", prompts, fn)


def _features(out):
    """transformers 5 may return a model output instead of a tensor from get_*_features."""
    return out if hasattr(out, "norm") else out.pooler_output


def _backbone(shared, key, model_value, processor_value, model_param, processor_param, device, bs):
    if key not in shared:
        m = resolve(model_value, model_param, ["config.json"])
        p = resolve(processor_value, processor_param)
        shared[key] = ClipBackbone(m, p, device, bs)
    return shared[key]


class CosineScorer:
    def __init__(self, name, backbone, clamp_zero: bool):
        self.name, self.backbone, self.clamp_zero = name, backbone, clamp_zero

    def score(self, images, prompts) -> np.ndarray:
        img = self.backbone.image_embeds(list(images))
        txt = self.backbone.text_embeds(list(prompts))
        s = 100.0 * (img * txt).sum(-1).numpy()
        return np.maximum(s, 0.0) if self.clamp_zero else s


@register("pickscore_x100")
def _pickscore(name, models, device, bs, shared):
    bb = _backbone(shared, "pickscore", models.get("pickscore_model"), models.get("pickscore_processor"),
                   "evaluate.models.pickscore_model", "evaluate.models.pickscore_processor", device, bs)
    return CosineScorer(name, bb, clamp_zero=False)


@register("clip_l14_x100")
def _clipscore(name, models, device, bs, shared):
    bb = _backbone(shared, "clip_l14", models.get("clip_model"), models.get("clip_model"),
                   "evaluate.models.clip_model", "evaluate.models.clip_model", device, bs)
    return CosineScorer(name, bb, clamp_zero=True)


def aesthetic_mlp(in_dim: int):
    """The LAION improved-aesthetic-predictor head (state-dict keys layers.{0,2,4,6,7})."""
    import torch.nn as nn

    class AestheticMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(in_dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

        def forward(self, x):
            return self.layers(x)

    return AestheticMLP()


class AestheticScorer:
    name = "aesthetic_laion"  # raw LAION aesthetic scale (about 1-10)

    def __init__(self, backbone, head_path):
        import torch

        self.backbone = backbone
        state = torch.load(head_path, map_location="cpu", weights_only=True)
        dim = state["layers.0.weight"].shape[1]
        self.head = aesthetic_mlp(dim).eval()
        self.head.load_state_dict(state)

    def score(self, images, prompts) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.head(self.backbone.image_embeds(list(images))).squeeze(-1).numpy()


@register("aesthetic_laion")
def _aesthetic(name, models, device, bs, shared):
    bb = _backbone(shared, "clip_l14", models.get("clip_model"), models.get("clip_model"),
                   "evaluate.models.clip_model", "evaluate.models.clip_model", device, bs)
    head = resolve(models.get("aesthetic_head"), "evaluate.models.aesthetic_head")
    return AestheticScorer(bb, head)
