"""Video metrics on crafted clips, with random-weight networks of the real architectures saved as safetensors."""

import math

import numpy as np
import pytest
import torch
from safetensors.torch import save_model

from seppo.evaluation.video_metrics import (
    LPIPS,
    PSNR_CAP_DB,
    FeatureNet,
    fid,
    frechet_distance,
    fvd,
    psnr,
    ssim,
)


def _clips(n=2, t=4, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, t, size, size, 3), dtype=np.uint8)


def test_psnr_matches_the_hand_computation_and_identical_clips_hit_the_cap():
    a = np.full((2, 3, 16, 16, 3), 100, np.uint8)
    b = a + np.uint8(10)  # MSE = (10/255)^2 on every pixel
    np.testing.assert_allclose(psnr(a, b), [20 * math.log10(25.5)] * 2, atol=1e-4)
    x = _clips()
    assert psnr(x, x).tolist() == [PSNR_CAP_DB, PSNR_CAP_DB]
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:, :2])
    with pytest.raises(ValueError, match=r"uint8 clips \(N, T, H, W, 3\)"):
        psnr(x.astype(np.float32), x)


def test_ssim_is_one_on_identical_clips_and_falls_with_noise():
    x = _clips(seed=1)
    np.testing.assert_allclose(ssim(x, x), [1.0, 1.0], atol=1e-6)
    rng = np.random.default_rng(2)
    mild = np.clip(x + rng.normal(0, 8, x.shape), 0, 255).astype(np.uint8)
    heavy = np.clip(x + rng.normal(0, 60, x.shape), 0, 255).astype(np.uint8)
    s_mild, s_heavy = ssim(mild, x), ssim(heavy, x)
    assert (s_heavy < s_mild).all() and (s_mild < 1.0).all()


def _lpips_weights(tmp_path, net="alex"):
    from torchmetrics.functional.image.lpips import _LPIPS

    torch.manual_seed(0)
    m = _LPIPS(pretrained=False, net=net, pnet_rand=True)
    path = tmp_path / f"lpips_{net}.safetensors"
    save_model(m, str(path))
    return path


def test_lpips_is_zero_on_identical_clips_and_positive_otherwise(tmp_path):
    metric = LPIPS(_lpips_weights(tmp_path))
    x, y = _clips(seed=3), _clips(seed=4)
    np.testing.assert_allclose(metric(x, x), [0.0, 0.0], atol=1e-7)
    assert (metric(x, y) > 0).all()
    with pytest.raises(FileNotFoundError, match="local .safetensors"):
        LPIPS(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="do not fit the architecture"):
        LPIPS(_lpips_weights(tmp_path, "squeeze"), net="alex")


def test_frechet_distance_of_a_shifted_copy_is_the_squared_shift():
    a = np.random.default_rng(5).normal(size=(400, 6))
    shift = np.array([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    assert frechet_distance(a, a + shift) == pytest.approx(float((shift ** 2).sum()), rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="equal d"):
        frechet_distance(a, a[:, :3])


def _feature_weights(tmp_path, kind):
    from torchvision import models

    torch.manual_seed(0)
    net = models.inception_v3(weights=None, aux_logits=False, init_weights=False) if kind == "fid" \
        else models.video.r3d_18(weights=None)
    net.fc = torch.nn.Identity()
    # random weights, batch-norm statistics set on random inputs, so the features have a usable scale
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    with torch.no_grad():
        net.train()(torch.rand(4, 3, 299, 299) if kind == "fid" else torch.rand(4, 3, 4, 112, 112))
    path = tmp_path / f"{kind}.safetensors"
    save_model(net.eval(), str(path))
    return path


@pytest.mark.slow
def test_fid_and_fvd_are_zero_between_a_set_and_itself_and_grow_with_a_shift(tmp_path):
    x = _clips(n=3, t=2, seed=6)
    darker = (x // 2).astype(np.uint8)
    fid_net = FeatureNet("fid", "inception_v3", _feature_weights(tmp_path, "fid"))
    assert fid_net.features(x).shape == (6, 2048)  # one row per frame
    assert fid(x, x, fid_net) == pytest.approx(0.0, abs=1e-3)
    assert fid(darker, x, fid_net) > 1e-3
    fvd_net = FeatureNet("fvd", "r3d_18", _feature_weights(tmp_path, "fvd"))
    assert fvd_net.features(x).shape == (3, 512)  # one row per clip
    assert fvd(x, x, fvd_net) == pytest.approx(0.0, abs=1e-3)
    assert fvd(darker, x, fvd_net) > 1e-3
    with pytest.raises(ValueError, match="kind 'fvd'"):
        fvd(x, x, fid_net)
    with pytest.raises(ValueError, match="do not fit the architecture"):
        FeatureNet("fvd", "r3d_18", _feature_weights(tmp_path, "fid"))
