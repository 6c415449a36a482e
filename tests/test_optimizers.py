"""The fused-on-CUDA Adam config: same updates as nerfstudio's Adam, chosen by device."""

from __future__ import annotations

import torch
from nerfstudio.engine.optimizers import AdamOptimizerConfig

from ds4d_ns.optimizers import Ds4dAdamConfig


def test_cpu_parameters_keep_the_default_adam_and_update_like_nerfstudios():
    torch.manual_seed(0)
    ours_param = torch.nn.Parameter(torch.randn(5))
    theirs_param = torch.nn.Parameter(ours_param.detach().clone())
    ours = Ds4dAdamConfig(lr=0.1, eps=1e-15).setup([ours_param])
    theirs = AdamOptimizerConfig(lr=0.1, eps=1e-15).setup([theirs_param])
    assert not ours.defaults["fused"]
    for _ in range(3):
        for param, optimizer in ((ours_param, ours), (theirs_param, theirs)):
            optimizer.zero_grad()
            (param.square().sum()).backward()
            optimizer.step()
    torch.testing.assert_close(ours_param, theirs_param)


def test_fused_is_used_when_asked_and_matches_the_default():
    torch.manual_seed(1)
    fused_param = torch.nn.Parameter(torch.randn(7))
    plain_param = torch.nn.Parameter(fused_param.detach().clone())
    fused = Ds4dAdamConfig(lr=0.05, eps=1e-15, fused=True).setup([fused_param])
    plain = Ds4dAdamConfig(lr=0.05, eps=1e-15, fused=False).setup([plain_param])
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    for _ in range(3):
        for param, optimizer in ((fused_param, fused), (plain_param, plain)):
            optimizer.zero_grad()
            (param.sin().sum()).backward()
            optimizer.step()
    torch.testing.assert_close(fused_param, plain_param, rtol=1e-5, atol=1e-6)
