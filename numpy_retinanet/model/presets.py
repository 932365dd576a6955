"""The model presets: every architecture setting of a RetinaNet, by name.

See ``model/retinanet.py`` for why each preset's sizes are what they are.
"""

from __future__ import annotations

from numpy_retinanet._settings import setting_metadata, value_problem

STRIDES = (8, 16, 32, 64, 128)  # P3..P7

PRESETS = {
    "tiny": dict(stem_width=4, widths=(4, 4, 8, 8), depths=(1, 1, 1, 1), gn_groups=2,
                 fpn_channels=8, p6_from="c5", head_depth=1, head_channels=8, head_norm_groups=0,
                 anchor_sizes=(16, 32, 64, 128, 256), aspect_ratios=(0.5, 1.0, 2.0), scales=(1.0, 2 ** 0.5),
                 prior=0.01),
    "default": dict(stem_width=16, widths=(16, 32, 64, 128), depths=(1, 1, 1, 1), gn_groups=8,
                    fpn_channels=64, p6_from="c5", head_depth=2, head_channels=64, head_norm_groups=8,
                    anchor_sizes=(12, 24, 48, 96, 192), aspect_ratios=(0.5, 1.0, 2.0),
                    scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)), prior=0.01),
    "paper": dict(stem_width=64, widths=(64, 128, 256, 512), depths=(2, 2, 2, 2), gn_groups=32,
                  fpn_channels=256, p6_from="c5", head_depth=4, head_channels=256, head_norm_groups=0,
                  anchor_sizes=(32, 64, 128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0),
                  scales=(1.0, 2 ** (1 / 3), 2 ** (2 / 3)), prior=0.01),
}


def resolve_config(preset: str, overrides: dict) -> dict:
    """The preset's settings with ``overrides`` applied; unknown names raise ValueError."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    cfg = dict(PRESETS[preset])
    unknown = sorted(set(overrides) - set(cfg))
    if unknown:
        raise ValueError(f"unknown model settings {unknown}; known: {sorted(cfg)}")
    cfg.update(overrides)
    problems = [p for name, m in MODEL_SETTINGS.items()
                if (p := value_problem(name, cfg[name], PRESETS[preset][name], m))]
    if problems:
        raise ValueError("invalid model settings: " + "; ".join(problems))
    for key in ("widths", "depths", "anchor_sizes", "aspect_ratios", "scales"):
        cfg[key] = tuple(cfg[key])
    return cfg


#: What each preset setting means and which values it takes (``--help``, ``resolve_config``).
#: Every preset sets every one of these.
MODEL_SETTINGS = {
    "stem_width": setting_metadata("channels of the backbone's stride-2 stem conv", low=1),
    "widths": setting_metadata("channels of the four ResNet stages (C2..C5)", low=1),
    "depths": setting_metadata("basic blocks in each of the four stages", low=1),
    "gn_groups": setting_metadata("GroupNorm groups in the backbone", low=1),
    "fpn_channels": setting_metadata("channels of every pyramid level P3..P7 (the paper: 256)", low=1),
    "p6_from": setting_metadata("P6 from C5 (the paper) or from P5 (later implementations)", choices=("c5", "p5")),
    "head_depth": setting_metadata("hidden 3x3 convs of each subnet (the paper: 4)", low=0),
    "head_channels": setting_metadata("channels of the subnets' hidden convs (the paper: 256)", low=1),
    "head_norm_groups": setting_metadata("GroupNorm groups after each hidden head conv (0: none, as in the paper)",
                                         low=0),
    "anchor_sizes": setting_metadata("anchor side at scale 1 on P3..P7, in pixels (the paper: 32..512)", low=1),
    "aspect_ratios": setting_metadata("anchor aspect ratios h/w (the paper: 0.5 1 2)", low=0.0, low_open=True),
    "scales": setting_metadata("anchor scales per size (the paper: 2^0, 2^(1/3), 2^(2/3))", low=0.0,
                               low_open=True),
    "prior": setting_metadata("pi of §3.3: the foreground probability the classification bias starts at",
                              low=0.0, low_open=True, high=1.0, high_open=True),
}
