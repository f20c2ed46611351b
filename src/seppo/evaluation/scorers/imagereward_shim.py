"""Make the `image-reward` 1.5 package importable and runnable offline on transformers 5.

ImageReward's BLIP code imports helpers that transformers 5 moved or removed and an undeclared
OpenAI `clip` package (used only by its own CLIPScore/Aesthetic helpers, which we do not use).
This shim restores those names and fixes three BertModel methods; with the same checkpoint and
inputs it gives the same features as transformers 4.55 without the shim (../shared/docs).
Call `install()` before importing `ImageReward`.
"""

from __future__ import annotations

import sys
import types

_INSTALLED = False


def _find_pruneable_heads_and_indices(heads, n_heads, head_size, already_pruned_heads):
    import torch

    mask = torch.ones(n_heads, head_size)
    heads = set(heads) - already_pruned_heads
    for head in heads:
        head = head - sum(1 if h < head else 0 for h in already_pruned_heads)
        mask[head] = 0
    mask = mask.view(-1).contiguous().eq(1)
    index = torch.arange(len(mask))[mask].long()
    return heads, index


def install() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    import torch
    import transformers.modeling_utils as mu
    from transformers import pytorch_utils as pu

    sys.modules.setdefault("clip", types.ModuleType("clip"))
    for name in ("apply_chunking_to_forward", "prune_linear_layer"):
        if not hasattr(mu, name):
            setattr(mu, name, getattr(pu, name))
    if not hasattr(mu, "find_pruneable_heads_and_indices"):
        mu.find_pruneable_heads_and_indices = _find_pruneable_heads_and_indices

    from ImageReward.models.BLIP import med

    def init_weights(self):
        if getattr(self, "all_tied_weights_keys", None) is None:
            self.post_init()
        else:
            mu.PreTrainedModel.init_weights(self)

    def invert_attention_mask(self, mask):
        ext = mask[:, None, None, :] if mask.dim() == 2 else mask[:, None, :, :]
        ext = ext.to(dtype=self.dtype)
        return (1.0 - ext) * torch.finfo(self.dtype).min

    def get_head_mask(self, head_mask, num_hidden_layers, is_attention_chunked=False):
        return [None] * num_hidden_layers

    for cls in (med.BertPreTrainedModel, med.BertModel):
        cls.init_weights = init_weights
        cls.invert_attention_mask = invert_attention_mask
        cls.get_head_mask = get_head_mask
    _INSTALLED = True
