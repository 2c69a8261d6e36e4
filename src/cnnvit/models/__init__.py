"""Models: the presets, any timm name and `tv:<torchvision name>`, from scratch or with weights.

    build(name, num_classes, in_chans=3, image_size=224, pretrained=False, weights=None, **kw)
    family(name_or_model) -> "cnn" | "vit"   (from the model's structure: `structure.is_vit`)
    count_parameters(model) -> int           PRESETS: name -> description
    input_normalization(name, pretrained_or_weights) -> RGB (mean, std) | None
    load_weights(model, path, name) -> list[str]   (what was adapted)

Published weights come from the local caches (huggingface_hub, torch.hub) without network
access, else are downloaded when the network answers (`hub`).
"""

from cnnvit.models.registry import (
    PRESETS,
    build,
    check_name,
    count_parameters,
    family,
    input_normalization,
)
from cnnvit.models.small import choose_patch_size
from cnnvit.models.weights import load_weights, read_state_dict

__all__ = [
    "PRESETS",
    "build",
    "check_name",
    "choose_patch_size",
    "count_parameters",
    "family",
    "input_normalization",
    "load_weights",
    "read_state_dict",
]
