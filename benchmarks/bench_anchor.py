"""Cost per optimizer update of the multi-draw anchors (train.anchor_draws = K) vs the paper's
single-draw anchor, measured side by side in one run on the same models and batch.

Per update the K-draw anchor adds K no-gradient forwards of the policy and K of the reference on
the winners (one batched call each). Uses the tiny SD UNet of `models/base` if present, else a
random one of the same architecture.
    python benchmarks/bench_anchor.py [--batch 16 --draws 4 8 16 --repeats 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from _unets import median_seconds, policy_and_reference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/base"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--draws", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()

    from seppo.config import TrainConfig
    from seppo.models.conditioning import TextCond
    from seppo.training.forward import MicroBatch, anchor_draws, compute_loss

    policy, ref, sched = policy_and_reference(args.model)
    c = policy.config
    B, s = args.batch, c.sample_size
    shape = (c.in_channels, s, s)
    g = torch.Generator().manual_seed(0)
    z_w, z_r = torch.randn(B, *shape, generator=g), torch.randn(B, *shape, generator=g)
    cond = TextCond(torch.randn(B, 32, c.cross_attention_dim, generator=g))
    noise, t = torch.randn(B, *shape, generator=g), torch.randint(0, 1000, (B,), generator=g)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-9)

    def step_fn(k: int):
        cfg = TrainConfig(anchor_draws=k, criterion="sign", anchor_margin_z=2.0 if k else 0.0)
        batch = MicroBatch(z_w, z_r, cond, noise, t)
        if k:
            batch.anchor_noise, batch.anchor_t = anchor_draws(0, 1, 0, 0, B, k, shape, 1000)

        def step():
            loss, _ = compute_loss(cfg, policy, ref, sched, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    def timeit(fn):
        return median_seconds(fn, args.repeats, warmup=1)

    variants = [0, *args.draws]
    fns = {k: step_fn(k) for k in variants}
    times = {k: [] for k in variants}
    for _ in range(3):  # interleaved, so machine noise hits every variant alike
        for k in variants:
            times[k].append(timeit(fns[k]))
    base = min(times[0])
    print(f"micro-batch {B} winners + {B} reference samples, UNet {sum(p.numel() for p in policy.parameters())/1e6:.2f}M "
          f"params, {torch.get_num_threads()} threads; median of {args.repeats} updates, best of 3 interleaved rounds")
    print(f"anchor_draws 0 (the paper: the loss's own draw): {base * 1e3:8.1f} ms/update  1.00x")
    for k in args.draws:
        m = min(times[k])
        print(f"anchor_draws {k:2d} (+ {k} policy and {k} reference forwards per winner): {m * 1e3:8.1f} ms/update  "
              f"{m / base:.2f}x")


if __name__ == "__main__":
    main()
