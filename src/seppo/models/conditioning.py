"""Text conditioning of SD-family UNets: SD1.5 (one CLIP encoder) and SDXL (two, plus micro-conditioning).

SDXL's UNet takes, besides the token embeddings (both encoders' penultimate hidden states,
concatenated), ``added_cond_kwargs``: ``text_embeds`` (the second encoder's projected pooled
output) and ``time_ids`` = (original h, original w, crop top, crop left, target h, target w). We
encode exactly as ``StableDiffusionXLPipeline.encode_prompt`` does (a test checks it), and train
with time ids (res, res, 0, 0, res, res) as Diffusion-DPO's SDXL code does: the cache's images are
shorter-side resized and cropped to ``res`` and sampling at ``res`` uses the same ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch


def is_sdxl(model_dir: str | Path) -> bool:
    """True for a StableDiffusionXLPipeline folder (two text encoders)."""
    index = Path(model_dir) / "model_index.json"
    if index.exists():
        return "text_encoder_2" in json.loads(index.read_text())
    return (Path(model_dir) / "text_encoder_2").exists()


def sdxl_time_ids(resolution: int, n: int) -> torch.Tensor:
    return torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], dtype=torch.float32).repeat(n, 1)


@dataclass
class TextCond:
    """What one micro-batch conditions the UNet on; ``pooled``/``time_ids`` only for SDXL."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def _map(self, fn) -> "TextCond":
        return TextCond(fn(self.hidden), *(None if x is None else fn(x) for x in (self.pooled, self.time_ids)))

    def to(self, *args, **kwargs) -> "TextCond":
        return self._map(lambda x: x.to(*args, **kwargs))

    def twice(self) -> "TextCond":
        """The conditioning of a fused 2B batch (winner half, reference-sample half)."""
        return self._map(lambda x: torch.cat([x, x]))

    def unet_kwargs(self) -> dict:
        kw = {"encoder_hidden_states": self.hidden}
        if self.pooled is not None:
            kw["added_cond_kwargs"] = {"text_embeds": self.pooled, "time_ids": self.time_ids}
        return kw


def as_cond(cond) -> TextCond:
    return cond if isinstance(cond, TextCond) else TextCond(cond)


class TextEncoders:
    """A pipeline folder's tokenizer(s) and text encoder(s), in eval mode (safetensors only)."""

    def __init__(self, model_dir: str | Path):
        from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        model_dir = Path(model_dir)
        self.sdxl = is_sdxl(model_dir)
        self.tokenizers = [CLIPTokenizer.from_pretrained(model_dir, subfolder="tokenizer")]
        self.encoders = [CLIPTextModel.from_pretrained(model_dir, subfolder="text_encoder",
                                                       use_safetensors=True).eval()]
        if self.sdxl:
            self.tokenizers.append(CLIPTokenizer.from_pretrained(model_dir, subfolder="tokenizer_2"))
            self.encoders.append(CLIPTextModelWithProjection.from_pretrained(
                model_dir, subfolder="text_encoder_2", use_safetensors=True).eval())

    def encode(self, captions: list[str], batch: int = 512) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(hidden (N, L, D), pooled (N, P) or None)."""
        if not self.sdxl:
            from .pretrain import encode_text

            return encode_text(self.tokenizers[0], self.encoders[0], captions, batch), None
        hidden, pooled = [], []
        with torch.no_grad():
            for i in range(0, len(captions), batch):
                parts, pool = [], None
                for tok, enc in zip(self.tokenizers, self.encoders):
                    ids = tok(captions[i : i + batch], padding="max_length", max_length=tok.model_max_length,
                              truncation=True, return_tensors="pt").input_ids
                    out = enc(ids, output_hidden_states=True)
                    if out[0].ndim == 2:  # the projected pooled output of the second encoder
                        pool = out[0]
                    parts.append(out.hidden_states[-2])
                hidden.append(torch.cat(parts, dim=-1))
                pooled.append(pool)
        return torch.cat(hidden), torch.cat(pooled)
