"""One SePPO optimizer step vs the unavoidable work measured in isolation, in one run.

Unavoidable: one policy forward+backward on 2B latents and one reference forward on 2B.
Step: what the trainer does per update (noising, fused forwards, loss, anchor sign, backward,
grad clipping, AdamW). Target: step / unavoidable <= 1.15. Uses the tiny SD UNet of
`models/base` if present, else a random one of the same architecture.
    python benchmarks/bench_step.py [--batch 8 --repeats 20]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from _unets import median_seconds, policy_and_reference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path("models/base"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()

    from seppo.config import TrainConfig
    from seppo.models.conditioning import TextCond
    from seppo.training.forward import MicroBatch, compute_loss

    policy, ref, sched = policy_and_reference(args.model)
    c = policy.config
    B, s = args.batch, c.sample_size
    g = torch.Generator().manual_seed(0)
    z_w, z_r = torch.randn(B, c.in_channels, s, s, generator=g), torch.randn(B, c.in_channels, s, s, generator=g)
    cond = torch.randn(B, 32, c.cross_attention_dim, generator=g)
    noise, t = torch.randn(B, c.in_channels, s, s, generator=g), torch.randint(0, 1000, (B,), generator=g)
    x2, t2, c2 = torch.cat([z_w, z_r]), torch.cat([t, t]), torch.cat([cond, cond])
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-7)
    cfg = TrainConfig()

    def unavoidable():
        out = policy(x2, t2, c2).sample
        out.float().pow(2).mean().backward()
        with torch.no_grad():
            ref(x2, t2, c2)
        policy.zero_grad(set_to_none=True)

    def step():
        loss, _ = compute_loss(cfg, policy, ref, sched, MicroBatch(z_w, z_r, TextCond(cond), noise, t))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def timeit(fn):
        return median_seconds(fn, args.repeats, warmup=3)

    # interleave to share machine noise
    a, b = [], []
    for _ in range(3):
        a.append(timeit(unavoidable))
        b.append(timeit(step))
    ua, sb = min(a), min(b)
    print(f"batch {B} winners + {B} reference samples, UNet {sum(p.numel() for p in policy.parameters())/1e6:.2f}M params")
    print(f"unavoidable (policy fwd+bwd 2B, reference fwd 2B): {ua*1e3:8.1f} ms")
    print(f"full SePPO optimizer step                        : {sb*1e3:8.1f} ms")
    print(f"ratio step / unavoidable: {sb / ua:.3f} (target <= 1.15)")


if __name__ == "__main__":
    main()
