"""Pretraining steps by AdamW implementation (`base_model.adamw_impl`, `scorer_model.adamw_impl`).

    python benchmarks/bench_adamw.py [--repeats 15]

The embedded theta_0's VAE and UNet and the embedded PickScore are small models of many small tensors (the
scorer: ~100 tensors for 0.4 M weights), so torch's CPU default AdamW ('for-loop': a Python loop of ~10 ops
per tensor) is a visible share of a step. Prints each model's median step (forward + backward + clip +
AdamW) with 'for-loop', 'foreach' and 'fused', and the ratio to 'for-loop', measured in alternation in one
process at the default params' sizes.
"""

from __future__ import annotations

import argparse

from _unets import median_seconds

IMPLS = ("for-loop", "foreach", "fused")


def _models():
    import torch

    from seppo.config import ScorerModelConfig
    from seppo.evaluation.pickscore_train import build_clip, pixel_values
    from seppo.models import components

    gen = torch.Generator().manual_seed(0)
    unet_in = (torch.randn(64, 4, 8, 8, generator=gen), torch.randint(0, 1000, (64,), generator=gen),
               torch.randn(64, 32, 64, generator=gen))
    images = torch.randn(32, 3, 32, 32, generator=gen)
    pixels = pixel_values(torch.randint(0, 256, (128, 32, 32, 3), generator=gen, dtype=torch.uint8).numpy())
    ids = torch.randint(0, 49408, (128, 32), generator=gen)

    def unet_loss(m):
        return ((m(*unet_in).sample - unet_in[0]) ** 2).mean()

    def vae_loss(m):
        post = m.encode(images).latent_dist
        return ((m.decode(post.mean).sample - images) ** 2).mean() + 1e-6 * post.kl().mean()

    def clip_loss(m):
        img = m.get_image_features(pixel_values=pixels)
        txt = m.get_text_features(input_ids=ids)
        img = getattr(img, "pooler_output", img)
        txt = getattr(txt, "pooler_output", txt)
        return -(img * txt).sum(-1).mean()

    return {
        "theta_0 UNet (batch 64)": (lambda: components.unet([32, 64], 1, 8, 64, 0, 2), unet_loss, 1e-2),
        "theta_0 VAE (batch 32)": (lambda: components.vae([16, 32, 32], 32, 0), vae_loss, 0.0),
        "PickScore (batch 128)": (lambda: build_clip(ScorerModelConfig(), 32, 49408), clip_loss, 0.1),
    }


def main() -> None:
    import torch

    from seppo.optim import adamw

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    print(f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for name, (build, loss_fn, wd) in _models().items():
        steps = {}
        for impl in IMPLS:
            model = build().train()
            opt = adamw(model.parameters(), 1e-4, wd, impl)

            def step(model=model, opt=opt, loss_fn=loss_fn):
                loss_fn(model).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)

            steps[impl] = step
        times = {k: [] for k in steps}
        for _ in range(3):  # alternate, so that drift in the machine's speed hits every implementation alike
            for k, fn in steps.items():
                times[k].append(median_seconds(fn, max(1, args.repeats // 3)))
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        print(name)
        for k, s in med.items():
            print(f"  {k:9s} {s * 1000:6.0f} ms/step   ratio to for-loop {s / med['for-loop']:.2f}")


if __name__ == "__main__":
    main()
