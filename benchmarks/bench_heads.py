"""Pretraining step of the embedded UNet by attention head count (`base_model.unet_attention_heads`).

    python benchmarks/bench_heads.py [--batch 64] [--repeats 15]

The embedded UNet (channels 32 / 64, 8x8 latents, 32 text tokens of width 64) with 8 heads has heads 4 and 8
wide; CPU SDPA spends most of its time on per-head overhead at those widths. Same FLOPs with fewer, wider heads.
Prints each head count's median step (forward + backward + AdamW) and its ratio to 8 heads, measured in
alternation in one process; the pipeline's choice (2) is weighed against quality in docs/world.md.
"""

from __future__ import annotations

import argparse

from _unets import median_seconds


def main() -> None:
    import torch

    from seppo.models import components

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(args.batch, 4, 8, 8, generator=gen)
    t = torch.randint(0, 1000, (args.batch,), generator=gen)
    cond = torch.randn(args.batch, 32, 64, generator=gen)
    steps = {}
    for heads in (8, 2, 1):
        unet = components.unet([32, 64], 1, 8, 64, 0, heads).train()
        opt = torch.optim.AdamW(unet.parameters(), lr=1e-4)

        def step(unet=unet, opt=opt):
            loss = ((unet(z, t, cond).sample - z) ** 2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        steps[heads] = step
    times = {h: [] for h in steps}
    for _ in range(3):  # alternate, so that drift in the machine's speed hits every head count alike
        for h, fn in steps.items():
            times[h].append(median_seconds(fn, max(1, args.repeats // 3)))
    med = {h: sorted(v)[len(v) // 2] for h, v in times.items()}
    print(f"UNet [32, 64] pretraining step, batch {args.batch}, {torch.get_num_threads()} torch threads")
    for h, s in med.items():
        print(f"  {h} heads: {s * 1000:6.0f} ms/step   ratio to 8 heads {s / med[8]:.2f}")


if __name__ == "__main__":
    main()
