"""The model presets: every architecture setting of a RetinaNet, by name.

See ``model/retinanet.py`` for why each preset's sizes are what they are.
"""

from __future__ import annotations

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
    for key in ("widths", "depths", "anchor_sizes", "aspect_ratios", "scales"):
        cfg[key] = tuple(cfg[key])
    return cfg


#: What each preset setting means, for ``--help`` and readers; every preset sets every one of these.
MODEL_SETTINGS = {
    "stem_width": "channels of the backbone's stride-2 stem conv",
    "widths": "channels of the four ResNet stages (C2..C5)",
    "depths": "basic blocks in each of the four stages",
    "gn_groups": "GroupNorm groups in the backbone",
    "fpn_channels": "channels of every pyramid level P3..P7 (the paper: 256)",
    "p6_from": "P6 from C5 (the paper) or from P5 (later implementations)",
    "head_depth": "hidden 3x3 convs of each subnet (the paper: 4)",
    "head_channels": "channels of the subnets' hidden convs (the paper: 256)",
    "head_norm_groups": "GroupNorm groups after each hidden head conv (0: none, as in the paper)",
    "anchor_sizes": "anchor side at scale 1 on P3..P7, in pixels (the paper: 32..512)",
    "aspect_ratios": "anchor aspect ratios h/w (the paper: 0.5 1 2)",
    "scales": "anchor scales per size (the paper: 2^0, 2^(1/3), 2^(2/3))",
    "prior": "pi of §3.3: the foreground probability the classification bias starts at",
}
#: Allowed values of the settings that take one of a few names.
MODEL_CHOICES = {"p6_from": ("c5", "p5")}
