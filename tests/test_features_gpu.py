"""Frame features on CUDA (run on the GPU machine): fp16 extraction and TSSF agree with the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ds4d_ns.features.backbone import FrameFeatureExtractorConfig, load_backbone, patch_features, preprocess
from ds4d_ns.features.feature_bank import FeatureBank, FrameFeaturesConfig
from ds4d_ns.fields.tssf import FramePointFeatures

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_fp16_extraction_on_cuda_matches_fp32_on_cpu(tiny_dinov2: Path):
    config = FrameFeatureExtractorConfig(model_id=str(tiny_dinov2), image_size=56)
    pixels = preprocess(torch.rand(3, 64, 64, 3), config.image_size)
    on_cpu = patch_features(load_backbone(config, "cpu"), pixels)
    cuda_backbone = load_backbone(config, "cuda")
    assert next(cuda_backbone.parameters()).dtype == torch.float16
    on_cuda = patch_features(cuda_backbone, pixels.cuda()).float().cpu()
    torch.testing.assert_close(on_cuda, on_cpu, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("fusion", ["mean", "ga", "da"])
def test_point_features_on_cuda_match_the_cpu(fusion):
    from ds4d_ns import camera_layouts
    from ds4d_ns.rendering.camera_matrices import opengl_c2w_to_opencv_viewmat

    torch.manual_seed(0)
    layout = [camera_layouts.input_view(), *camera_layouts.zero123pp_v12_views()[:3]]
    c2w = torch.stack([camera_layouts.orbit_c2w(v) for v in layout]).float()
    viewmats = opengl_c2w_to_opencv_viewmat(c2w)[None].repeat(3, 1, 1, 1)
    focal = camera_layouts.focal_from_fov(camera_layouts.INPUT_FOVY_DEG, 64)
    intrinsics = torch.tensor([[focal, 0, 32.0], [0, focal, 32.0], [0, 0, 1]])[None, None].repeat(3, 4, 1, 1)
    maps = torch.randn(3, 4, 8, 5, 5).half()
    bank = FeatureBank(
        config=FrameFeaturesConfig(mode="dsfd", fusion=fusion, dim=8),
        maps=maps,
        dynamic_magnitude=maps[:, :, 0].abs(),
        times=torch.tensor([0.0, 0.5, 1.0]),
        viewmats=viewmats,
        intrinsics=intrinsics,
        width=64,
        height=64,
        front_view=0,
    )
    module = FramePointFeatures(bank)
    for parameter in module.parameters():
        parameter.data.normal_()
    points = 0.4 * torch.randn(500, 3)
    expected = module(points, 0.3)
    got = module.cuda()(points.cuda(), 0.3)
    torch.testing.assert_close(got.features.cpu(), expected.features, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.view_weights.cpu(), expected.view_weights, atol=1e-4, rtol=1e-4)
