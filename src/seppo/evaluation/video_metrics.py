"""Video metrics of generated clips against held-out real clips: PSNR, SSIM, LPIPS, FID and FVD.

Clips are uint8 arrays (N, T, H, W, 3). The paired metrics compare generated clip i with real clip i
(the same caption), frame by frame, and give one value per clip (the mean over its frames), so the
evaluation's bootstrap CIs apply to them as to any per-prompt score:
- PSNR in dB (data range [0, 1]); identical frames have an infinite PSNR, capped at PSNR_CAP_DB;
- SSIM in [-1, 1] (torchmetrics, Gaussian window 11, sigma 1.5); identical clips give 1;
- LPIPS (torchmetrics' LPIPS network, alex / vgg / squeeze backbone); identical clips give 0.
The distribution metrics compare the two sets as a whole (one number, lower is better):
- FID: Frechet distance of frame features (torchvision Inception v3, 2048-d pool features, frames
  resized to 299 px);
- FVD: Frechet distance of clip features (torchvision R(2+1)D-18 / R3D-18 Kinetics-400 video
  network, 512-d, clips resized to 112 px). The FVD of the literature uses an I3D network; values are
  comparable only between runs with the same feature network, which the report names.
Feature and LPIPS networks come from local files only (`*.safetensors` state dicts of the named
architecture) or, with the word "torchvision", from torchvision's own weight cache (TORCH_HOME):
nothing is downloaded here, and no weights load at import time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

PSNR_CAP_DB = 100.0
FEATURE_NETS = {"fid": ("inception_v3",), "fvd": ("r3d_18", "r2plus1d_18")}


def _frames(clips: np.ndarray):
    """(N, T, H, W, 3) uint8 -> float tensor (N * T, 3, H, W) in [0, 1]."""
    import torch

    a = _check(clips, "clips")
    n, t, h, w, _ = a.shape
    return torch.from_numpy(a.reshape(n * t, h, w, 3)).permute(0, 3, 1, 2).float().div(255.0), n, t


def _check(clips, name: str) -> np.ndarray:
    a = np.asarray(clips)
    if a.ndim != 5 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 clips (N, T, H, W, 3), got {a.dtype} {a.shape}")
    return a


def _paired(gen: np.ndarray, real: np.ndarray) -> None:
    if _check(gen, "generated").shape != _check(real, "real").shape:
        raise ValueError(f"paired metrics need clips of the same shape: generated {np.shape(gen)}, "
                         f"real {np.shape(real)}")


def psnr(gen: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Per clip: the mean over frames of the frame PSNR in dB, each capped at PSNR_CAP_DB."""
    import torch
    from torchmetrics.functional.image import peak_signal_noise_ratio

    _paired(gen, real)
    g, n, t = _frames(gen)
    r, _, _ = _frames(real)
    per = peak_signal_noise_ratio(g, r, data_range=1.0, reduction="none", dim=(1, 2, 3))
    per = torch.nan_to_num(per, posinf=PSNR_CAP_DB).clamp(max=PSNR_CAP_DB)
    return per.reshape(n, t).mean(1).double().numpy()


def ssim(gen: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Per clip: the mean over frames of the frame SSIM."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _paired(gen, real)
    g, n, t = _frames(gen)
    r, _, _ = _frames(real)
    per = structural_similarity_index_measure(g, r, data_range=1.0, reduction="none")
    return per.reshape(n, t).mean(1).double().numpy()


def _embedded_meta(weights: str | Path) -> dict | None:
    """The architecture record of `seppo video-features` weights, None for other weights (checked on load)."""
    path = Path(weights)
    if path.suffix != ".safetensors" or not path.is_file():
        return None  # _load_state names what is wrong
    from .feature_nets import read_meta

    return read_meta(path)


def _load_state(module, weights: str | Path, what: str) -> None:
    from safetensors.torch import load_model

    path = Path(weights)
    if path.suffix != ".safetensors" or not path.is_file():
        raise FileNotFoundError(f"{what} weights {path}: expected a local .safetensors file of the "
                                f"architecture's state dict (or 'torchvision' for torchvision's cache)")
    # load_model, not load_file: LPIPS holds its heads twice (lin0 and lins.0), which save_model stores once
    try:
        missing, unexpected = load_model(module, str(path), strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ValueError(f"{what} weights {path} do not fit the architecture: {str(err)[:400]}") from None
    if missing or unexpected:
        raise ValueError(f"{what} weights {path} do not fit the architecture: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")


class LPIPS:
    """The LPIPS distance (torchmetrics' network). ``weights``: a .safetensors state dict of the whole
    network (backbone and linear heads), or "torchvision" (backbone from torchvision's cache, heads
    shipped with torchmetrics)."""

    def __init__(self, weights: str | Path, net: Literal["alex", "vgg", "squeeze"] = "alex", device: str = "cpu"):
        # torchmetrics keeps the network in a private class; pinned in requirements.lock, checked by the tests
        from torchmetrics.functional.image.lpips import _LPIPS

        if str(weights) == "torchvision":
            self.model = _LPIPS(pretrained=True, net=net, pnet_rand=False)
        else:
            self.model = _LPIPS(pretrained=False, net=net, pnet_rand=True)
            _load_state(self.model, weights, f"LPIPS ({net})")
        self.model.eval().to(device)
        self.device = device

    def __call__(self, gen: np.ndarray, real: np.ndarray, batch: int = 64) -> np.ndarray:
        """Per clip: the mean over frames of the frame LPIPS."""
        import torch

        _paired(gen, real)
        g, n, t = _frames(gen)
        r, _, _ = _frames(real)
        out = []
        with torch.no_grad():
            for i in range(0, len(g), batch):
                a, b = (x[i:i + batch].to(self.device) * 2 - 1 for x in (g, r))  # LPIPS takes [-1, 1]
                out.append(self.model(a, b, normalize=False).flatten().cpu())
        return torch.cat(out).reshape(n, t).mean(1).double().numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) of two feature sets (rows = samples)."""
    from scipy import linalg

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"Frechet distance needs two (n >= 2, d) feature sets of equal d: {a.shape}, {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # few samples make the product singular: checked below instead
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s_a @ s_b)
        if not np.isfinite(covmean).all():  # regularise, as the FID reference implementation does
            eps = 1e-6 * np.eye(a.shape[1])
            covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = covmean.real
    d = float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2.0 * np.trace(covmean))
    return max(d, 0.0)  # rounding can leave -1e-12 for identical sets


@dataclass
class FeatureNet:
    """A feature network: frame features (FID) or clip features (FVD).

    ``weights``: "torchvision" (torchvision's cache), a ``.safetensors`` state dict of ``arch`` (a torchvision
    network with its classifier removed), or the trunk of an embedded network (`seppo video-features`), whose file
    metadata names its own architecture: ``arch`` is then taken from the file."""

    kind: Literal["fid", "fvd"]
    arch: str
    weights: str | Path
    device: str = "cpu"

    def __post_init__(self):
        import torch

        tv = str(self.weights) == "torchvision"
        meta = None if tv else _embedded_meta(self.weights)
        if meta is not None:
            from .feature_nets import KINDS, build_trunk

            if KINDS.get(meta["arch"]) != self.kind:
                raise ValueError(f"{self.weights}: an embedded {meta['arch']!r} network, not a {self.kind.upper()} "
                                 "feature network")
            self.arch, self.size = meta["arch"], meta["input_size"]
            self.mean, self.std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # the trunks read [-1, 1]
            net = build_trunk(meta["arch"], meta["width"], meta["dim"])
            _load_state(net, self.weights, f"{self.kind.upper()} feature network ({meta['arch']})")
            self.net = net.eval().to(self.device)
            return
        from torchvision import models

        if self.arch not in FEATURE_NETS[self.kind]:
            raise ValueError(f"{self.kind} feature network {self.arch!r}: one of {FEATURE_NETS[self.kind]}")
        if self.kind == "fid":
            net = models.inception_v3(weights="DEFAULT" if tv else None, aux_logits=True, init_weights=False)
            net.aux_logits, net.AuxLogits = False, None
            self.size, self.mean, self.std = 299, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        else:
            net = getattr(models.video, self.arch)(weights="DEFAULT" if tv else None)
            self.size, self.mean, self.std = 112, (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)
        net.fc = torch.nn.Identity()
        if not tv:
            _load_state(net, self.weights, f"{self.kind.upper()} feature network ({self.arch})")
        self.net = net.eval().to(self.device)

    def features(self, clips: np.ndarray, batch: int = 16) -> np.ndarray:
        """FID: one row per frame (N * T rows); FVD: one row per clip."""
        import torch
        import torch.nn.functional as F

        x, n, t = _frames(clips)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        x = (F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False) - mean) / std
        if self.kind == "fvd":
            x = x.reshape(n, t, 3, self.size, self.size).permute(0, 2, 1, 3, 4)  # (N, C, T, H, W)
        out = []
        with torch.no_grad():
            for i in range(0, len(x), batch):
                out.append(self.net(x[i:i + batch].to(self.device)).flatten(1).cpu().double())
        return torch.cat(out).numpy()


def fid(gen: np.ndarray, real: np.ndarray, net: FeatureNet) -> float:
    """FID over all frames of the two clip sets."""
    if net.kind != "fid":
        raise ValueError("fid() needs a FeatureNet of kind 'fid'")
    return frechet_distance(net.features(gen), net.features(real))


def fvd(gen: np.ndarray, real: np.ndarray, net: FeatureNet) -> float:
    """FVD over the two clip sets (one feature row per clip)."""
    if net.kind != "fvd":
        raise ValueError("fvd() needs a FeatureNet of kind 'fvd'")
    return frechet_distance(net.features(gen), net.features(real))
