"""ImageReward (BLIP ViT-L + BERT-base cross-attention + MLP), raw score as the paper reports it.

Built from the `image-reward` package's own BLIP modules (through `imagereward_shim`), with the
released checkpoint (ImageReward.pt, a state dict) loaded by ``torch.load(weights_only=True)``,
the BLIP med config (json) and a local BERT tokenizer folder (bert-base-uncased's vocab.txt):
nothing is downloaded. Scores are standardised with ImageReward's published mean/std, as its
`score()` does. ``imagereward_vit`` exists so tests can use ViT-B through the same code.
"""

from __future__ import annotations

import numpy as np

from .base import MissingWeights, register, resolve

IR_MEAN, IR_STD = 0.16717362830052426, 1.0333394966054072


def _tokenizer(folder):
    from transformers import BertTokenizer

    if not (folder / "vocab.txt").exists():
        raise MissingWeights(f"{folder / 'vocab.txt'} is missing (evaluate.models.imagereward_tokenizer)")
    tok = BertTokenizer.from_pretrained(str(folder))
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tok.enc_token_id = tok.convert_tokens_to_ids("[ENC]")
    return tok


def build_model(med_config, vit: str = "large", image_size: int = 224):
    """The ImageReward network with random weights (the checkpoint is loaded on top)."""
    from .imagereward_shim import install

    install()
    import torch.nn as nn
    from ImageReward.ImageReward import MLP
    from ImageReward.models.BLIP.blip import create_vit
    from ImageReward.models.BLIP.med import BertConfig, BertModel

    class _Blip(nn.Module):
        def __init__(self):
            super().__init__()
            self.visual_encoder, width = create_vit(vit, image_size, False, 0, 0)
            cfg = BertConfig.from_json_file(str(med_config))
            cfg.encoder_width = width
            self.text_encoder = BertModel(config=cfg, add_pooling_layer=False)

    class _ImageReward(nn.Module):
        def __init__(self):
            super().__init__()
            self.blip = _Blip()
            self.mlp = MLP(self.blip.text_encoder.config.hidden_size)

    return _ImageReward()


class ImageRewardScorer:
    name = "imagereward"  # raw ImageReward (standardised by its published mean/std)

    def __init__(self, checkpoint, med_config, tokenizer_dir, vit, device, batch_size, image_size: int = 224):
        import torch
        from ImageReward.ImageReward import _transform  # noqa: F401  (after install())

        self.model = build_model(med_config, vit, image_size)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        try:
            missing, _ = self.model.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shapes: another ViT size or input side than the checkpoint's
            raise MissingWeights(
                f"{checkpoint}: does not fit a BLIP ViT-{vit} at {image_size} px ({str(err).splitlines()[1:2]}); "
                "set evaluate.models.imagereward_vit / imagereward_image_size to the checkpoint's") from None
        if missing:
            raise MissingWeights(f"{checkpoint}: not an ImageReward checkpoint (missing {missing[:3]}...)")
        self.model.eval().to(device)
        self.tok = _tokenizer(tokenizer_dir)
        self.preprocess = _transform(image_size)
        self.device, self.batch_size = device, batch_size

    def score(self, images, prompts) -> np.ndarray:
        import torch
        from PIL import Image

        out = []
        with torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                ims = torch.stack([self.preprocess(Image.fromarray(np.asarray(x))) for x in images[i : i + self.batch_size]])
                txt = self.tok(list(prompts[i : i + self.batch_size]), padding="max_length", truncation=True,
                               max_length=35, return_tensors="pt")
                emb = self.model.blip.visual_encoder(ims.to(self.device))
                att = torch.ones(emb.shape[:-1], dtype=torch.long, device=self.device)
                h = self.model.blip.text_encoder(txt.input_ids.to(self.device),
                                                 attention_mask=txt.attention_mask.to(self.device),
                                                 encoder_hidden_states=emb, encoder_attention_mask=att,
                                                 return_dict=True).last_hidden_state[:, 0, :]
                out.append(((self.model.mlp(h).squeeze(-1) - IR_MEAN) / IR_STD).float().cpu())
        return torch.cat(out).numpy()


@register("imagereward")
def _build(name, models, device, bs, shared):
    ckpt = resolve(models.get("imagereward_checkpoint"), "evaluate.models.imagereward_checkpoint")
    med = resolve(models.get("imagereward_med_config"), "evaluate.models.imagereward_med_config")
    tok = resolve(models.get("imagereward_tokenizer"), "evaluate.models.imagereward_tokenizer")
    return ImageRewardScorer(ckpt, med, tok, models.get("imagereward_vit") or "large", device, bs,
                             models.get("imagereward_image_size") or 224)
