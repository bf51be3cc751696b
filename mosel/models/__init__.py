"""Model packs: the interface a servable multi-modal model implements (`pack`), the registry
that finds packs by name -- built in, installed (`mosel.models` entry points) or named as
MODULE:CLASS (`registry`) --, the labelled data a pack brings (`labelled`), checkpoints
(`checkpoint`), input batching for training (`items`), the built-in AV-Digits pack with its
data (`av_digits/`) and the paper's TVLT latency model for simulation (`tvlt/`).

    from mosel.models import get_pack
    pack = get_pack("av-digits", preset="tiny")
"""

from mosel.models.labelled import ArraySet, LabelledSet
from mosel.models.pack import InvalidInput, ModalitySpec, ModelPack, TensorSpec
from mosel.models.registry import get_pack, pack_names, register_pack, register_pack_path, use_packs

__all__ = ["get_pack", "pack_names", "register_pack", "register_pack_path", "use_packs", "ModelPack", "ModalitySpec",
           "TensorSpec", "InvalidInput", "LabelledSet", "ArraySet"]
