"""Model packs: the interface a servable multi-modal model implements (`pack`), the registry
that finds packs by name (`registry`), checkpoints (`checkpoint`), input batching for
training (`items`), the built-in AV-Digits pack with its data (`av_digits/`) and the
paper's TVLT latency model for simulation (`tvlt/`).

    from mosel.models import get_pack
    pack = get_pack("av-digits", preset="tiny")
"""

from mosel.models.pack import InvalidInput, ModalitySpec, ModelPack, TensorSpec
from mosel.models.registry import get_pack, pack_names, register_pack

__all__ = ["get_pack", "pack_names", "register_pack", "ModelPack", "ModalitySpec", "TensorSpec", "InvalidInput"]
