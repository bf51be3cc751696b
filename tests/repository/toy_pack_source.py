"""Source of a model pack that exists only in a test's temporary directory (written there as
`toy_pack.py`, never imported from the project): two modalities on synthetic data.

- "tone": float32 sequences [steps, 8], 12..48 steps: a class-dependent mix of sinusoids
  plus noise -- the strong modality, with the heavier encoder (a conv stack over time);
- "glyph": uint8 [8, 8]: a class-dependent blob under heavy noise -- weak and cheap.
"""

SOURCE = r'''
import numpy as np
import torch
from torch import nn

from mosel.models.pack import ModalitySpec, ModelPack, TensorSpec

CLASSES = 4
MAX_STEPS = 48


class ToySet:
    def __init__(self, tones, glyphs, labels):
        self._items = {"tone": tones, "glyph": glyphs}
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def items(self, modality):
        return self._items[modality]


def draw(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=n).astype(np.int64)
    tones, glyphs = [], []
    t_axis = np.arange(MAX_STEPS, dtype=np.float32)[:, None]
    channels = np.arange(8, dtype=np.float32)[None, :]
    for c in labels:
        steps = int(rng.integers(12, MAX_STEPS + 1))
        wave = np.sin(0.15 * (c + 1) * t_axis + channels * (0.3 + 0.1 * c))[:steps]
        tones.append((wave + rng.normal(0, 1.6, size=wave.shape)).astype(np.float32))
        glyph = rng.normal(90, 80, size=(8, 8))
        r, k = divmod(int(c), 2)
        glyph[r * 4:(r + 1) * 4, k * 4:(k + 1) * 4] += 25
        glyphs.append(np.clip(glyph, 0, 255).astype(np.uint8))
    return ToySet(tones, np.stack(glyphs), labels)


class ToneEncoder(nn.Module):
    def __init__(self, width, depth, embed_dim):
        super().__init__()
        self.inp = nn.Conv1d(8, width, 5, padding=2)
        self.convs = nn.ModuleList(nn.Conv1d(width, width, 5, padding=2) for _ in range(depth))
        self.out = nn.Linear(width, embed_dim)

    def forward(self, x, lengths):
        mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]
        h = torch.relu(self.inp(x.transpose(1, 2))) * mask
        for conv in self.convs:
            h = torch.relu(conv(h)) * mask
        pooled = h.sum(dim=2) / mask.sum(dim=2).clamp_min(1.0)
        return self.out(pooled)


class GlyphEncoder(nn.Module):
    def __init__(self, embed_dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, embed_dim))

    def forward(self, x, lengths):
        return self.mlp(x.reshape(x.shape[0], -1))


class GatedFusion(nn.Module):
    def __init__(self, modalities, embed_dim, classes):
        super().__init__()
        self.gate = nn.Linear(embed_dim, 1)
        self.head = nn.Sequential(nn.Linear(embed_dim + modalities, 32), nn.ReLU(), nn.Linear(32, classes))

    def forward(self, emb, present):
        present = present.to(torch.bool)
        scores = self.gate(emb).squeeze(-1).masked_fill(~present, -1e4)
        weights = torch.softmax(scores, dim=1) * present.to(emb.dtype)
        pooled = (weights[..., None] * torch.where(present[..., None], emb, torch.zeros_like(emb))).sum(1)
        return self.head(torch.cat([pooled, present.to(emb.dtype)], dim=1))


class ToyPack(ModelPack):
    def __init__(self, preset="default"):
        super().__init__(
            name="toy-sensor", embed_dim=16, labels=tuple(f"class-{i}" for i in range(CLASSES)),
            modalities=(
                ModalitySpec("tone", TensorSpec("float32", (-1, 8), sequence=True, max_steps=MAX_STEPS),
                             "sinusoid mix under noise, steps x 8 channels"),
                ModalitySpec("glyph", TensorSpec("uint8", (8, 8), mean=100.0, std=60.0), "noisy 8x8 blob"),
            ),
            size={"preset": preset})

    def build_encoder(self, modality):
        if modality == "tone":
            return ToneEncoder(width=96, depth=3, embed_dim=self.embed_dim)
        if modality == "glyph":
            return GlyphEncoder(self.embed_dim)
        raise KeyError(modality)

    def build_fusion_head(self):
        return GatedFusion(len(self.modalities), self.embed_dim, self.num_classes)

    def preprocess(self, modality, raw, field=None):
        item = np.ascontiguousarray(np.asarray(raw, dtype=self.modality(modality).spec.dtype))
        self.validate_item(modality, item, field or modality)
        return item

    def dataset(self, split, seed=0, data_dir=None):
        return draw(800, seed) if split == "train" else draw(400, 10_000 + seed)

    def data_description(self):
        return {"train": "800 synthetic draws per epoch", "test": "400 synthetic draws, seed 10000"}

    def training_defaults(self):
        return {"epochs": 6, "batch_size": 64, "lr": 5e-3, "weight_decay": 1e-4}
'''
