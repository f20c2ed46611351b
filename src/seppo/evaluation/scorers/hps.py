"""HPSv2 (v2.0 and v2.1): open_clip ViT-H-14 fine-tuned on HPD v2; 100 x cosine(image, prompt).

The checkpoint files are the released ones (HPS_v2_compressed.pt, HPS_v2.1_compressed.pt: a dict
with 'state_dict'), loaded with ``torch.load(weights_only=True)`` into an open_clip model built
with ``pretrained=None`` (so nothing is downloaded). v2.0 and v2.1 scores are not comparable: the
version is in the name. ``evaluate.models.hps_architecture`` exists so tests can use a tiny
open_clip config through the same code.
"""

from __future__ import annotations

import numpy as np

from .base import register, resolve


class HPSv2:
    def __init__(self, name, checkpoint, architecture: str, device: str, batch_size: int):
        import open_clip
        import torch

        self.name, self.device, self.batch_size = name, device, batch_size
        model, _, self.preprocess = open_clip.create_model_and_transforms(architecture, pretrained=None,
                                                                          device=device)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state))
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(architecture)

    def score(self, images, prompts) -> np.ndarray:
        import torch
        from PIL import Image

        out = []
        with torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                ims = torch.stack([self.preprocess(Image.fromarray(np.asarray(x))) for x in images[i : i + self.batch_size]])
                txt = self.tokenizer(list(prompts[i : i + self.batch_size]))
                fi = self.model.encode_image(ims.to(self.device), normalize=True)
                ft = self.model.encode_text(txt.to(self.device), normalize=True)
                out.append(100.0 * (fi * ft).sum(-1).float().cpu())
        return torch.cat(out).numpy()


def _factory(version_param: str):
    def build(name, models, device, bs, shared):
        ckpt = resolve(models.get(version_param), f"evaluate.models.{version_param}")
        return HPSv2(name, ckpt, models.get("hps_architecture") or "ViT-H-14", device, bs)

    return build


register("hps_v20_x100")(_factory("hps_v20_checkpoint"))
register("hps_v21_x100")(_factory("hps_v21_checkpoint"))
