"""The network of §4: ResNet backbone, feature pyramid, the two subnets, presets."""
