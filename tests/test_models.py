"""Behaviour of the two SSL models and their mask helpers, on tiny sizes."""

from __future__ import annotations

import math

import pytest
import torch

from models.masking import average_masked, covering_masks, masked_count
from models.patchtst_ssl import PatchTSTSSL
from models.swin_mae import SwinMAE

B, T, C = 3, 64, 4


def _patchtst(seed: int = 0, **kw) -> PatchTSTSSL:
    torch.manual_seed(seed)
    args = dict(seq_len=T, patch_len=8, d_model=16, n_heads=2, n_layers=2, d_ff=32, mask_ratio=0.4)
    return PatchTSTSSL(**{**args, **kw})


def _swin(seed: int = 0, **kw) -> SwinMAE:
    torch.manual_seed(seed)
    args = dict(img_size=32, name="swin_tiny_patch4_window7_224", patch_size=4, window_size=4,
                embed_dim=16, depths=[1, 1], num_heads=[1, 2], decoder_dim=16, mask_ratio=0.5)
    return SwinMAE(**{**args, **kw})


def _series(seed: int = 1) -> torch.Tensor:
    return torch.randn(B, T, C, generator=torch.Generator().manual_seed(seed))


def _image(batch: int = 2, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- mask helpers
@pytest.mark.parametrize(("ratio", "n", "k"), [(0.4, 8, 3), (0.5, 16, 8), (0.01, 8, 1),
                                               (0.99, 8, 7), (0.4, 32, 13)])
def test_masked_count_rounds_and_keeps_one_of_each(ratio: float, n: int, k: int) -> None:
    assert masked_count(ratio, n) == k


def test_covering_masks_cover_every_unit_with_fixed_count() -> None:
    keys = torch.arange(32) % 3
    masks = covering_masks(keys, 13)
    assert masks.shape == (3, 32)
    assert masks.sum(dim=1).tolist() == [13, 13, 13]
    coverage = masks.sum(dim=0)
    assert coverage.min() == 1 and coverage.sum() == 39  # 7 units hidden twice
    # interleaved: the first mask hides every third patch (0, 3, ..., 30) plus 1 and 4
    assert torch.nonzero(masks[0]).flatten().tolist() == [0, 1, 3, 4, 6, 9, 12, 15, 18, 21,
                                                           24, 27, 30]


def test_average_masked_uses_only_masks_that_hid_a_position() -> None:
    errors = [torch.tensor([1.0, 5.0, 7.0]), torch.tensor([3.0, 9.0, 11.0])]
    masks = [torch.tensor([True, True, False]), torch.tensor([True, False, True])]
    assert average_masked(errors, masks).tolist() == [2.0, 5.0, 11.0]


# --------------------------------------------------------------------------- PatchTST
def test_patchtst_shapes_and_patch_count() -> None:
    model = _patchtst()
    out = model(_series())
    assert model.n_patches == 8 and model.n_masked == 3
    assert out["recon"].shape == out["target"].shape == (B, C, 8, 8)
    assert out["mask"].shape == (B, C, 8) and out["mask"].dtype == torch.bool
    assert out["loss"].ndim == 0
    # target is the channel-independent patching of the input
    assert torch.equal(out["target"][1, 2, 3], _series()[1, 24:32, 2])


def test_patchtst_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"seq_len \(60\) must be a multiple of patch_len \(8\)"):
        _patchtst(seq_len=60)
    model = _patchtst()
    uneven = model.random_mask(B, C, "cpu")
    uneven[0, 0] = False
    uneven[0, 0, :2] = True
    with pytest.raises(ValueError, match="same number of patches"):
        model(_series(), uneven)
    with pytest.raises(ValueError, match="length 64"):
        model(torch.randn(B, 32, C))


def test_patchtst_loss_is_mse_over_masked_patches_only() -> None:
    model = _patchtst()
    out = model(_series())
    mask = out["mask"]
    per_patch = (out["recon"] - out["target"]).square().mean(dim=-1)
    hand = per_patch[mask].mean()
    assert torch.allclose(out["loss"], hand)
    # visible patches are not predicted, so a mean over all patches would be k/N smaller
    assert torch.equal(out["recon"][~mask], out["target"][~mask])
    assert not torch.allclose(out["loss"], per_patch.mean())


def test_patchtst_never_sees_masked_content() -> None:
    model = _patchtst().eval()
    x = _series()
    mask = model.random_mask(B, C, "cpu", torch.Generator().manual_seed(3))
    noisy = x.clone()
    hidden = mask.repeat_interleave(8, dim=-1).transpose(1, 2)  # (B, T, C) sample mask
    noisy[hidden] = 100.0
    with torch.no_grad():
        a = model(x, mask)["recon"][mask]
        b = model(noisy, mask)["recon"][mask]
        c = model(x + 1.0, mask)["recon"][mask]
    assert torch.allclose(a, b, atol=1e-5)  # predictions depend on visible patches only
    assert not torch.allclose(a, c, atol=1e-3)  # ... and do depend on them


def test_patchtst_random_mask_exact_counts_and_seeded() -> None:
    model = _patchtst()
    m1 = model.random_mask(5, 6, "cpu", torch.Generator().manual_seed(7))
    m2 = model.random_mask(5, 6, "cpu", torch.Generator().manual_seed(7))
    m3 = model.random_mask(5, 6, "cpu", torch.Generator().manual_seed(8))
    assert m1.shape == (5, 6, 8)
    assert (m1.sum(dim=-1) == 3).all()
    assert torch.equal(m1, m2) and not torch.equal(m1, m3)
    assert len({tuple(row.tolist()) for row in m1.reshape(-1, 8)}) > 1  # per-series masks


def test_patchtst_complementary_masks_cover_all_patches() -> None:
    model = _patchtst()
    masks = model.complementary_masks(B, C, "cpu")
    assert len(masks) == math.ceil(8 / 3)
    for m in masks:
        assert m.shape == (B, C, 8) and (m.sum(dim=-1) == 3).all()
    assert torch.stack(masks).any(dim=0).all()
    assert all(torch.equal(a, b) for a, b in zip(masks, model.complementary_masks(B, C, "cpu"),
                                                  strict=True))


def test_patchtst_patch_and_scoring_errors() -> None:
    model = _patchtst().eval()
    x = _series()
    masks = model.complementary_masks(B, C, "cpu")
    with torch.no_grad():
        err = model.patch_errors(x, masks[0])
        out = model(x, masks[0])
        score = model.scoring_errors(x)
        manual = average_masked([model.patch_errors(x, m) for m in masks], masks)
    assert err.shape == (B, C, 8)
    assert torch.allclose(err, (out["recon"] - out["target"]).square().mean(dim=-1))
    assert (err[~masks[0]] == 0).all() and (err[masks[0]] > 0).all()
    assert torch.equal(score, manual) and (score > 0).all()
    with torch.no_grad():
        assert torch.equal(score, model.scoring_errors(x))  # deterministic


def test_patchtst_seeded_model_is_deterministic() -> None:
    mask = _patchtst().random_mask(B, C, "cpu", torch.Generator().manual_seed(0))
    a = _patchtst(seed=5)(_series(), mask)["loss"]
    b = _patchtst(seed=5)(_series(), mask)["loss"]
    assert torch.equal(a, b)


def test_patchtst_gradients_reach_every_parameter() -> None:
    model = _patchtst()
    model(_series())["loss"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_patchtst_training_steps_reduce_loss() -> None:
    model = _patchtst()
    t = torch.arange(T, dtype=torch.float32)
    x = torch.stack([torch.sin(t / (3 + c)) for c in range(C)], dim=-1).expand(B, -1, -1)
    mask = model.random_mask(B, C, "cpu", torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model(x, mask)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_models_run_under_bf16_autocast() -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        p_loss = _patchtst()(_series())["loss"]
        s_out = _swin()(_image())
    assert p_loss.dtype == torch.float32 and torch.isfinite(p_loss)
    assert torch.isfinite(s_out["loss"]) and s_out["recon"].shape == (2, 3, 32, 32)


# --------------------------------------------------------------------------- SwinMAE
def test_swin_shapes_and_mask_unit() -> None:
    model = _swin()
    out = model(_image())
    assert model.mask_unit == 8 and model.n_masked == 8
    assert out["recon"].shape == (2, 3, 32, 32)
    assert out["mask"].shape == (2, 4, 4) and out["mask"].dtype == torch.bool
    assert out["loss"].ndim == 0


def test_swin_loss_is_mse_over_masked_pixels_only() -> None:
    model = _swin()
    img = _image()
    out = model(img)
    px = out["mask"].repeat_interleave(8, 1).repeat_interleave(8, 2)
    sq = (out["recon"] - img).square()
    hand = sq.permute(1, 0, 2, 3)[:, px].mean()
    assert torch.allclose(out["loss"], hand)
    assert not torch.allclose(out["loss"], sq.mean())


def test_swin_never_sees_masked_pixels() -> None:
    model = _swin().eval()
    img = _image()
    mask = model.random_mask(2, "cpu", torch.Generator().manual_seed(2))
    px = model.pixel_mask(mask).expand(-1, 3, -1, -1)
    noisy = img.clone()
    noisy[px] = 50.0
    with torch.no_grad():
        a, b = model(img, mask)["recon"], model(noisy, mask)["recon"]
    assert torch.allclose(a, b, atol=1e-5)


def test_swin_masks_exact_seeded_and_covering() -> None:
    model = _swin()
    m1 = model.random_mask(4, "cpu", torch.Generator().manual_seed(1))
    assert m1.shape == (4, 4, 4) and (m1.flatten(1).sum(dim=1) == 8).all()
    assert torch.equal(m1, model.random_mask(4, "cpu", torch.Generator().manual_seed(1)))
    masks = model.complementary_masks(2, "cpu")
    assert len(masks) == 2  # checkerboard pair for a 0.5 ratio
    assert all((m.flatten(1).sum(dim=1) == 8).all() for m in masks)
    assert torch.equal(masks[0][0], ~masks[1][0])
    assert torch.stack(masks).any(dim=0).all()


def test_swin_pixel_and_scoring_errors() -> None:
    model = _swin().eval()
    img = _image()
    masks = model.complementary_masks(2, "cpu")
    with torch.no_grad():
        err = model.pixel_errors(img, masks[0])
        score = model.scoring_errors(img)
        again = model.scoring_errors(img)
    px = model.pixel_mask(masks[0]).expand(-1, 3, -1, -1)
    assert err.shape == (2, 3, 32, 32)
    assert (err[~px] == 0).all() and (err[px] > 0).all()
    assert torch.equal(score, again) and (score > 0).all()
    assert torch.equal(score[px], err[px])  # checkerboard: each pixel hidden exactly once


def test_swin_gradients_and_training_reduce_loss() -> None:
    model = _swin()
    img = _image(batch=2)
    mask = model.random_mask(2, "cpu", torch.Generator().manual_seed(0))
    model(img, mask)["loss"].backward()
    for name in ("mask_token", "encoder.patch_embed.proj.weight",
                 "encoder.layers.0.blocks.0.attn.qkv.weight",
                 "encoder.layers.1.downsample.reduction.weight"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name
    img = torch.randn(3, 8, 8).repeat(2, 1, 4, 4)  # every unit alike: learnable from context
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = model(img, mask)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(img_size=36), r"img_size \(36\) must be a multiple of the mask unit"),
        (dict(img_size=48, window_size=5), r"stage 0 feature size 12 .* window_size \(5\)"),
        (dict(depths=[1, 1], num_heads=[2]), r"depths \[1, 1\] and num_heads \[2\]"),
        (dict(img_size=8, patch_size=4), r"1x1 mask grid"),
        (dict(mask_ratio=1.0), r"mask_ratio must be in \(0, 1\)"),
        (dict(name="no_such_swin"), r"name 'no_such_swin': not a timm Swin .*Unknown model"),
        (dict(name="resnet18"), r"name 'resnet18': not a timm Swin Transformer"),
    ],
)
def test_swin_wrong_sizes_raise_clear_errors(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _swin(**kw)


def test_swin_cpu_default_config_trains() -> None:
    model = _swin(img_size=64, embed_dim=32, depths=[2, 2], num_heads=[2, 4], decoder_dim=64)
    out = model(_image(batch=16, size=64))
    out["loss"].backward()
    assert out["recon"].shape == (16, 3, 64, 64) and model.mask_unit == 8


def test_swin_tiny_workstation_variant_builds_and_runs() -> None:
    model = _swin(img_size=224, window_size=7, embed_dim=96, depths=[2, 2, 6, 2],
                  num_heads=[3, 6, 12, 24], decoder_dim=128).eval()
    assert model.mask_unit == 32 and model.n_masked == round(0.5 * 49)
    with torch.no_grad():
        out = model(_image(batch=1, size=224))
    assert out["recon"].shape == (1, 3, 224, 224) and torch.isfinite(out["loss"])
