"""Backbone registry (every entry), wrappers, projection head and encoder files."""

from __future__ import annotations

import pytest
import torch
from helpers.user_backbone import MyNet
from torch import nn

from dsm_lightning.models import (
    BackboneWrapper,
    EncoderLoadError,
    ProjectionHead,
    TwoPathwayBackbone,
    as_backbone,
    create_backbone,
    hub_names,
    infer_feature_dim,
    list_backbones,
    load_backbone_weights,
    load_encoder,
    register_backbone,
    save_encoder,
    strip_pytorchvideo_head,
)
from dsm_lightning.models import registry as registry_module
from dsm_lightning.models.i3d_inception import same_padding

# Small settings where the full model is too slow for CI (the full ones build the same code).
SMALL = {
    "c3d": {"width": 8},
    "csn_r101": {"width": 4},
    "r2plus1d_r50": {"width": 8},
    "slow_r50": {"width": 8},
    "x3d_xs": {"width_factor": 0.5, "depth_factor": 0.5, "head_dim": 64},
    "x3d_s": {"width_factor": 0.5, "depth_factor": 0.5, "head_dim": 64},
    "x3d_m": {"width_factor": 0.5, "depth_factor": 0.5, "head_dim": 64},
    "r3d_18": {"layers": (1, 1, 1, 1)},
    "r3d_34": {"layers": (1, 1, 1, 1)},
    "mc3_18": {"layers": (1, 1, 1, 1)},
    "r2plus1d_18": {"layers": (1, 1, 1, 1)},
    "tiny3d": {"width": 4},
    "i3d_r50": {"width": 8},
}
# Smaller clips for the networks without a width knob (the smallest the strides allow).
SMALL_INPUT = {"i3d_inception": (2, 3, 8, 32, 32), "r2plus1d_dsm": (2, 3, 4, 32, 32)}
REQUIRED = {"r3d_18", "mc3_18", "r2plus1d_18", "s3d", "c3d", "slow_r50", "x3d_xs", "x3d_s",
            "x3d_m", "r2plus1d_r50", "csn_r101", "tiny3d", "i3d_r50", "i3d_inception",
            "r2plus1d_dsm"}
# A sample of pytorchvideo.models.hub builders, one per head kind (ResNet, X3D projected
# pool, SlowFast two pathways, MViT transformer head, mobile-CPU X3D): builder kwargs
# (passed through to the hub builder; narrower stems where the builder has the knob) and
# the smallest clip the network takes (MViT: the size its positional embedding is built for).
HUB_SAMPLE = {
    "i3d_r50": ({"stem_dim_out": 8}, (2, 3, 4, 16, 16)),
    "x3d_xs": ({}, (2, 3, 4, 16, 16)),
    "slowfast_r50": ({"stem_dim_outs": (8, 1)}, (2, 3, 4, 16, 16)),
    "mvit_base_16x4": ({"spatial_size": 32, "temporal_size": 4, "patch_embed_dim": 16},
                       (2, 3, 4, 32, 32)),
    "efficient_x3d_xs": ({}, (2, 3, 4, 16, 16)),
}


def test_registry_lists_the_contract_names():
    assert REQUIRED <= set(list_backbones())


def _check_features_and_gradients(model, video):
    features = model(video)
    assert features.shape == (video.shape[0], model.feature_dim)
    assert torch.isfinite(features).all()
    features.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", list_backbones(families=False))
def test_every_backbone_builds_pools_and_backpropagates(name):
    torch.manual_seed(0)
    model = create_backbone(name, **SMALL.get(name, {}))
    _check_features_and_gradients(model, torch.randn(*SMALL_INPUT.get(name, (2, 3, 8, 64, 64))))


@pytest.mark.parametrize("name", sorted(HUB_SAMPLE))
def test_pytorchvideo_hub_builders_lose_their_head_and_backpropagate(name):
    kwargs, shape = HUB_SAMPLE[name]
    torch.manual_seed(0)
    model = create_backbone(f"pytorchvideo:{name}", **kwargs)
    assert model.feature_dim == infer_feature_dim(model, shape)  # the head's input, pooled
    _check_features_and_gradients(model, torch.randn(*shape))


def test_pytorchvideo_family_lists_every_hub_builder_and_passes_kwargs():
    import pytorchvideo.models.hub as hub

    listed = [n for n in list_backbones() if n.startswith("pytorchvideo:")]
    builders = {n for n, f in vars(hub).items() if callable(f) and n.endswith(("_r50", "_xs"))}
    assert {f"pytorchvideo:{n}" for n in builders} <= set(listed)
    assert set(listed) == {f"pytorchvideo:{n}" for n in hub_names()}
    assert not [n for n in listed if n.endswith("_detection")]
    assert set(list_backbones(families=False)) == set(list_backbones()) - set(listed)
    # kwargs reach the hub builder: the stem width sets the feature size (32 x stem)
    assert create_backbone("pytorchvideo:slow_r50", stem_dim_out=4).feature_dim == 128


def test_pytorchvideo_family_errors_name_the_problem():
    with pytest.raises(ValueError, match="never does"):
        create_backbone("pytorchvideo:x3d_xs", pretrained=True)
    assert create_backbone("pytorchvideo:x3d_xs", pretrained=False,
                           progress=False).feature_dim == 2048  # head_dim_out of the hub's X3D
    with pytest.raises(ValueError, match=r"unknown pytorchvideo hub builder 'x3d_xxl'; "
                                         r"available: c2d_r50"):
        create_backbone("pytorchvideo:x3d_xxl")
    with pytest.raises(ValueError, match="detection network"):
        create_backbone("pytorchvideo:slow_r50_detection")
    with pytest.raises(ValueError, match="pytorchvideo:x3d_xs: .*no_such_argument"):
        create_backbone("pytorchvideo:x3d_xs", no_such_argument=1)
    with pytest.raises(ValueError, match="unknown backbone family 'torchhub'"):
        create_backbone("torchhub:x3d_xs")
    with pytest.raises(ValueError, match="pytorchvideo:<name>"):
        create_backbone("x3d_xxl")
    with pytest.raises(ValueError, match="cannot remove the head"):
        strip_pytorchvideo_head(nn.Conv3d(3, 4, 1))


def test_original_hub_weights_load_into_the_headless_backbone(tmp_path):
    """A state dict of the hub network (head included) loads; only the head is left over."""
    import pytorchvideo.models.hub as hub

    torch.manual_seed(0)
    original = hub.x3d_xs(pretrained=False)
    torch.save(original.state_dict(), tmp_path / "x3d_xs.pt")
    model = load_backbone_weights(create_backbone("pytorchvideo:x3d_xs"), tmp_path / "x3d_xs.pt")
    for key, value in model.model.state_dict().items():
        torch.testing.assert_close(value, original.state_dict()[key])


def test_hub_backbone_round_trips_through_encoder_pt_by_name(tmp_path):
    torch.manual_seed(0)
    kwargs = {"stem_dim_out": 8}
    model = create_backbone("pytorchvideo:slow_r50", **kwargs).eval()
    path = save_encoder(tmp_path / "encoder.pt", model, "pytorchvideo:slow_r50", kwargs)
    loaded, meta = load_encoder(path)
    assert meta["backbone"] == "pytorchvideo:slow_r50" and loaded.feature_dim == 256
    video = torch.randn(2, 3, 4, 32, 32)
    torch.testing.assert_close(loaded.eval()(video), model(video))


def test_slowfast_feeds_every_alpha_th_frame_to_the_slow_pathway():
    model = create_backbone("pytorchvideo:slowfast_r50", stem_dim_outs=(8, 1))
    assert isinstance(model, TwoPathwayBackbone) and model.alpha == 4
    seen = []
    model.model.blocks[0].register_forward_pre_hook(  # the network edits the list in place
        lambda _, args: seen.append([pathway.clone() for pathway in args[0]]))
    video = torch.arange(8.0).view(1, 1, 8, 1, 1).expand(2, 3, 8, 16, 16).contiguous()
    model.eval()(video)
    slow, fast = seen[0]
    assert slow[0, 0, :, 0, 0].tolist() == [0.0, 4.0] and torch.equal(fast, video)
    assert len(seen) == 1


def test_public_code_r2plus1d_layout():
    """R(2+1)D-10 of the public DSM code: Tran et al.'s intermediate widths everywhere
    (the 3x7x7 stem: floor(3*49*3*64 / (49*3 + 3*64)) = 83), a factorised 1x1x1 shortcut,
    time and space halved by each of the last three layers."""
    model = create_backbone("r2plus1d_dsm")
    net = model.model
    assert net.conv1.spatial_conv.out_channels == (3 * 49 * 3 * 64) // (49 * 3 + 3 * 64) == 83
    assert net.conv1.temporal_conv.kernel_size == (3, 1, 1)
    shortcut = net.conv3.block1.downsampleconv
    assert (shortcut.spatial_conv.stride, shortcut.temporal_conv.stride) == ((1, 2, 2),
                                                                             (2, 1, 1))
    assert [len(layer.blocks) + 1 for layer in (net.conv2, net.conv3, net.conv4, net.conv5)] == [
        1, 1, 1, 1]
    assert net(torch.zeros(2, 3, 16, 32, 32)).shape == (2, 512, 2, 2, 2)
    assert len(create_backbone("r2plus1d_dsm", layers=(2, 2, 2, 2)).model.conv2.blocks) == 1
    with pytest.raises(ValueError, match="layers"):
        create_backbone("r2plus1d_dsm", layers=(1, 1))


def test_public_code_inception_i3d_layout():
    """Inception-v1 I3D: TF "SAME" padding (the stride-2 stem pads 2 before, 3 after),
    1024 channels at stride 8 in time and 32 in space, the public file's module names."""
    assert same_padding((7, 7, 7), (2, 2, 2)) == (2, 3, 2, 3, 2, 3)
    assert same_padding((1, 3, 3), (1, 2, 2)) == (0, 1, 0, 1, 0, 0)
    assert same_padding((3, 3, 3), (1, 1, 1)) == (1, 1, 1, 1, 1, 1)
    model = create_backbone("i3d_inception")
    assert model.feature_dim == 1024
    keys = set(model.state_dict())
    assert {"model.conv3d_1a_7x7.conv3d.weight", "model.mixed_5c.branch_3.1.conv3d.weight",
            "model.mixed_4f.branch_2.1.batch3d.running_mean"} <= keys
    assert model.model.eval()(torch.zeros(2, 3, 16, 64, 64)).shape == (2, 1024, 2, 2, 2)
    assert create_backbone("i3d_inception", in_channels=2).model.conv3d_1a_7x7.conv3d.in_channels == 2


# preset name -> (its keywords, the same network's keywords under "pytorchvideo:<name>")
PRESETS = {
    "slow_r50": ({"width": 8, "in_channels": 2}, {"stem_dim_out": 8, "input_channel": 2}),
    "i3d_r50": ({"width": 8, "depth": 101}, {"stem_dim_out": 8, "model_depth": 101}),
    "r2plus1d_r50": ({"width": 8}, {"stem_dim_out": 8}),
    "csn_r101": ({"width": 4}, {"stem_dim_out": 4}),
    "x3d_xs": ({"width_factor": 0.5, "depth_factor": 0.5, "head_dim": 64},
               {"width_factor": 0.5, "depth_factor": 0.5, "head_dim_out": 64}),
    "x3d_s": ({"head_dim": 32, "width_factor": 0.5}, {"head_dim_out": 32, "width_factor": 0.5}),
    "x3d_m": ({"depth_factor": 0.5, "width_factor": 0.5},
              {"depth_factor": 0.5, "width_factor": 0.5}),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_named_pytorchvideo_backbones_are_presets_of_the_hub_family(name):
    """``create_backbone(name, width=...)`` is ``pytorchvideo:<name>`` with the hub's keywords:
    the same modules, the same weights from the same seed, the same features."""
    preset_kwargs, hub_kwargs = PRESETS[name]
    torch.manual_seed(0)
    preset = create_backbone(name, **preset_kwargs).eval()
    torch.manual_seed(0)
    hub = create_backbone(f"pytorchvideo:{name}", **hub_kwargs).eval()
    assert repr(preset) == repr(hub) and preset.feature_dim == hub.feature_dim
    for (key, value), (hub_key, hub_value) in zip(preset.state_dict().items(),
                                                  hub.state_dict().items(), strict=True):
        assert key == hub_key
        torch.testing.assert_close(value, hub_value, rtol=0, atol=0)
    video = torch.randn(1, preset_kwargs.get("in_channels", 3), 4, 32, 32)
    torch.testing.assert_close(preset(video), hub(video), rtol=0, atol=0)


def test_preset_keywords_and_their_hub_twins_are_not_both_given():
    with pytest.raises(ValueError, match="slow_r50: stem_dim_out is set from the preset"):
        create_backbone("slow_r50", width=8, stem_dim_out=8)
    with pytest.raises(ValueError, match="x3d_xs: head_dim_out"):
        create_backbone("x3d_xs", head_dim_out=8)
    assert create_backbone("csn_r101", width=4).model.blocks[0].pool is not None  # hub stem


def test_feature_dim_follows_width_knobs():
    assert create_backbone("tiny3d", width=4).feature_dim == 32
    assert create_backbone("c3d", width=8).feature_dim == 64
    assert create_backbone("slow_r50", width=8).feature_dim == 256


@pytest.mark.parametrize("name", ["tiny3d", "c3d"])
def test_own_cnns_check_their_arguments_at_construction(name):
    with pytest.raises(ValueError, match=r"norm must be one of \('batch', 'group', 'none'\)"):
        create_backbone(name, norm="layer")
    with pytest.raises(ValueError, match="width must be an int >= 1, got width=0"):
        create_backbone(name, width=0)
    grouped = create_backbone(name, width=2, norm="group").model.features
    assert [type(m).__name__ for m in grouped[:3]] == ["Conv3d", "GroupNorm", "ReLU"]
    assert grouped[0].bias is None and create_backbone(name, width=2, norm="none").model.features[0].bias is not None


def test_moved_names_keep_their_old_import_path():
    from dsm_lightning.models import backbones, c3d, pytorchvideo_hub, tiny3d, wrappers

    assert backbones.BackboneWrapper is wrappers.BackboneWrapper
    assert backbones.as_backbone is wrappers.as_backbone
    assert backbones.infer_feature_dim is wrappers.infer_feature_dim
    assert backbones.strip_pytorchvideo_head is pytorchvideo_hub.strip_pytorchvideo_head
    assert (backbones.C3D, backbones.Tiny3D) == (c3d.C3D, tiny3d.Tiny3D)


def test_register_duplicate_and_unknown_names_raise():
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("tiny3d")(lambda: nn.Identity())
    with pytest.raises(ValueError, match="unknown backbone 'nope'"):
        create_backbone("nope")


def test_none_kwargs_are_dropped_so_defaults_apply():
    assert create_backbone("tiny3d", width=None).feature_dim == 128


def test_custom_registration_and_wrapper_for_feature_maps_and_vectors():
    name = "_test_vector_net"
    try:
        @register_backbone(name)
        def _builder(*, dim: int = 5) -> nn.Module:
            net = nn.Sequential(nn.Flatten(), nn.LazyLinear(dim))
            return BackboneWrapper(net, feature_dim=dim)

        vector = create_backbone(name, dim=6)
        assert vector(torch.randn(3, 3, 2, 4, 4)).shape == (3, 6)
    finally:
        registry_module._BACKBONES.unregister(name)
    fmap = BackboneWrapper(nn.Conv3d(3, 7, 3, padding=1))  # feature map -> dry run finds D
    assert fmap.feature_dim == 7
    video = torch.randn(2, 3, 4, 8, 8)
    torch.testing.assert_close(fmap(video), fmap.model(video).mean(dim=(2, 3, 4)))


def test_projection_head_linear_mlp_and_normalisation():
    linear = ProjectionHead(16, output_dim=8)
    assert len([m for m in linear.modules() if isinstance(m, nn.Linear)]) == 1
    mlp = ProjectionHead(16, hidden_dim=32, output_dim=8, num_layers=3, batch_norm=True)
    assert len([m for m in mlp.modules() if isinstance(m, nn.Linear)]) == 3
    x = torch.randn(4, 16)
    for head in (linear, mlp):
        torch.testing.assert_close(head(x).norm(dim=1), torch.ones(4))
    raw = ProjectionHead(16, output_dim=8, normalize=False)
    assert not torch.allclose(raw(x).norm(dim=1), torch.ones(4))
    with pytest.raises(ValueError, match="num_layers"):
        ProjectionHead(16, hidden_dim=8, num_layers=1)
    with pytest.raises(ValueError, match="output_dim"):
        ProjectionHead(16, output_dim=0)


def test_encoder_pt_round_trip_with_weights_only(tmp_path):
    torch.manual_seed(0)
    model = create_backbone("tiny3d", width=4).eval()
    path = save_encoder(tmp_path / "sub" / "encoder.pt", model, "tiny3d", {"width": 4},
                        mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), num_frames=8,
                        crop_size=32, method="dsm")
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "dsm-lightning-encoder" and raw["version"] == 1
    assert raw["feature_dim"] == 32 and raw["normalization"]["std"] == pytest.approx([.4, .5, .6])
    loaded, meta = load_encoder(path)
    assert meta["backbone"] == "tiny3d" and meta["num_frames"] == 8 and "state_dict" not in meta
    video = torch.randn(2, 3, 8, 32, 32)
    torch.testing.assert_close(loaded.eval()(video), model(video))
    # load_backbone_weights accepts the same file (create_backbone itself builds only)
    again = load_backbone_weights(create_backbone("tiny3d", width=4), path).eval()
    torch.testing.assert_close(again(video), model(video))
    with pytest.raises(ValueError, match="load_backbone_weights"):
        create_backbone("tiny3d", width=4, weights=str(path))


def test_weights_file_of_the_original_network_ignores_only_the_removed_head(tmp_path):
    from torchvision.models.video import r3d_18

    torch.manual_seed(0)
    original = r3d_18(weights=None, num_classes=10)
    layers = (2, 2, 2, 2)
    torch.save(original.state_dict(), tmp_path / "r3d.pt")  # includes fc.weight / fc.bias
    model = load_backbone_weights(create_backbone("r3d_18", layers=layers), tmp_path / "r3d.pt")
    torch.testing.assert_close(model.model.stem[0].weight, original.stem[0].weight)
    state = original.state_dict()
    del state["layer1.0.conv1.0.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(EncoderLoadError, match="layer1.0.conv1.0.weight"):
        load_backbone_weights(create_backbone("r3d_18"), tmp_path / "broken.pt")


def test_load_encoder_mismatch_lists_keys_and_both_backbones(tmp_path):
    model = create_backbone("tiny3d", width=4)
    path = save_encoder(tmp_path / "encoder.pt", model, "tiny3d", {"width": 4})
    with pytest.raises(EncoderLoadError) as info:
        load_encoder(path, backbone="c3d", backbone_kwargs={"width": 4})
    message = str(info.value)
    assert "'tiny3d'" in message and "'c3d'" in message and "missing keys" in message
    with pytest.raises(EncoderLoadError, match="width"):
        load_encoder(path, backbone_kwargs={"width": 8})
    user = BackboneWrapper(nn.Conv3d(3, 4, 1))
    user_path = save_encoder(tmp_path / "user.pt", user, None)
    with pytest.raises(EncoderLoadError, match="user module"):
        load_encoder(user_path)
    loaded, _ = load_encoder(user_path, backbone=BackboneWrapper(nn.Conv3d(3, 4, 1)))
    torch.testing.assert_close(loaded.model.weight, user.model.weight)
    with pytest.raises(FileNotFoundError):
        load_encoder(tmp_path / "missing.pt")


def test_as_backbone_wraps_bare_modules_once():
    wrapped = as_backbone(MyNet())
    assert isinstance(wrapped, BackboneWrapper) and wrapped.feature_dim == 6
    assert as_backbone(wrapped) is wrapped
    assert as_backbone(MyNet(), feature_dim=6).feature_dim == 6
    assert set(wrapped.state_dict()) == {"model." + k for k in MyNet().state_dict()}


@pytest.mark.parametrize("saved_as", ["wrapper", "bare"])
def test_bare_user_module_loads_what_pretraining_saved(tmp_path, saved_as):
    """encoder.pt of BackboneWrapper(MyNet()) (how pretraining saves a user network) or of
    the bare MyNet() loads into a bare MyNet(): wrapped, weights equal, same features."""
    torch.manual_seed(0)
    trained = BackboneWrapper(MyNet())
    trained.model.norm.running_mean.add_(1.5)  # a buffer that must round-trip too
    source = trained if saved_as == "wrapper" else trained.model
    path = save_encoder(tmp_path / "encoder.pt", source, None)
    keys = set(torch.load(path, weights_only=True)["state_dict"])
    assert all(k.startswith("model.") for k in keys) == (saved_as == "wrapper")

    loaded, meta = load_encoder(path, backbone=MyNet())
    assert isinstance(loaded, BackboneWrapper) and loaded.feature_dim == 6
    assert meta["backbone"] is None
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    video = torch.randn(2, 3, 4, 8, 8)
    torch.testing.assert_close(loaded.eval()(video), trained.eval()(video))
    # a wrapper given by the user loads the same file
    again, _ = load_encoder(path, backbone=BackboneWrapper(MyNet()))
    torch.testing.assert_close(again.eval()(video), trained(video))


def test_bare_user_module_of_another_shape_is_refused(tmp_path):
    path = save_encoder(tmp_path / "encoder.pt", BackboneWrapper(MyNet()), None)
    with pytest.raises(EncoderLoadError, match="the given Conv3d"):
        load_encoder(path, backbone=nn.Conv3d(3, 6, 1))
