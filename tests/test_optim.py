import pytest
import torch

from seppo.optim import adamw


def _one_step(make):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s)) for s in [(16, 8, 3, 3), (16,), (40, 7)]]
    for p in params:
        p.grad = torch.randn_like(p)
    opt = make(params)
    for _ in range(3):
        opt.step()
    return [p.detach().clone() for p in params], opt


def test_for_loop_is_torchs_cpu_default_bit_for_bit():
    legacy, _ = _one_step(lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1))
    ours, opt = _one_step(lambda ps: adamw(ps, 1e-2, 0.1, "for-loop"))
    assert opt.defaults["foreach"] is False and not opt.defaults["fused"]
    assert all(torch.equal(a, b) for a, b in zip(legacy, ours))


@pytest.mark.parametrize("impl,flag", [("fused", "fused"), ("foreach", "foreach")])
def test_other_implementations_are_the_same_update_rounded_differently(impl, flag):
    legacy, _ = _one_step(lambda ps: adamw(ps, 1e-2, 0.1, "for-loop"))
    ours, opt = _one_step(lambda ps: adamw(ps, 1e-2, 0.1, impl))
    assert opt.defaults[flag] is True
    assert all(torch.allclose(a, b, rtol=0, atol=1e-6) for a, b in zip(legacy, ours))


def test_unknown_implementation_names_the_param():
    with pytest.raises(ValueError, match=r"adamw_impl: expected one of \['for-loop', 'foreach', 'fused'\] \(got 'adam8'\)"):
        adamw([torch.nn.Parameter(torch.zeros(2))], 1e-3, 0.0, "adam8")
