"""Training a model pack's encoders and fusion head (`mosel train`).

Modality dropout, so every configuration the scheduler may pick is usable. Default
("all"): the encoders run once per batch and the (cheap) fusion head is trained on every
one of the 2^M - 1 configurations, loss averaged -- exhaustive dropout, so every encoder
also gets a direct single-modality signal. "random": the full set plus one uniformly
drawn non-empty subset per sample (classic modality dropout). Batches are packed exactly as the serving batcher packs
them (mosel.models.items.pack_items), so training sees the serving input distribution.

Deterministic for a seed: module init under torch.manual_seed(seed), data draws and
order from numpy Generators seeded from (seed, epoch), deterministic torch algorithms.
The data comes from the pack's `dataset("train", seed)` hook, drawn afresh every epoch;
batches are bucketed by the lengths of the first dynamic sequence modality, if any.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mosel.models.items import pack_items
from mosel.models.labelled import steps, take
from mosel.models.pack import TRAINING_DEFAULTS, ModelPack
from mosel.models.registry import get_pack


def bucket_modality(pack: ModelPack) -> str | None:
    """The modality whose lengths bucket the batches: the first sequence modality with a
    dynamic step axis (None when there is none: plain shuffled batches)."""
    for m in pack.modalities:
        if m.spec.sequence and m.spec.shape and m.spec.shape[0] == -1:
            return m.name
    return None


def training_hyperparameters(pack: ModelPack) -> dict[str, Any]:
    """The pack's training defaults, gaps filled from mosel.models.pack.TRAINING_DEFAULTS."""
    return {**TRAINING_DEFAULTS, **pack.training_defaults()}


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _deterministic() -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def _normalise_size(size: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if size is None:
        return {}
    if isinstance(size, str):
        return {"preset": size}
    return {k: v for k, v in dict(size).items() if v is not None}


def random_subsets(rng: np.random.Generator, batch: int, modalities: int) -> torch.Tensor:
    """bool[batch, modalities]: a uniformly drawn non-empty subset per row."""
    codes = rng.integers(1, 2**modalities, size=batch)
    bits = (codes[:, None] >> np.arange(modalities)[None, :]) & 1
    return torch.from_numpy(bits.astype(bool))


def all_subsets(modalities: int) -> list[torch.Tensor]:
    """Every configuration as a bool[1, M] mask, the full set first."""
    codes = sorted(range(1, 2**modalities), key=lambda c: (-bin(c).count("1"), c))
    return [torch.tensor([[bool(c >> i & 1) for i in range(modalities)]]) for c in codes]


def length_bucketed_batches(rng: np.random.Generator, lengths: list[int], batch_size: int, group: int = 8) -> list[np.ndarray]:
    """Shuffle, sort by length within groups of `group` batches (less padding), shuffle the batches."""
    order = rng.permutation(len(lengths))
    lens = np.asarray(lengths)
    batches = []
    for g in range(0, len(order), batch_size * group):
        chunk = order[g : g + batch_size * group]
        chunk = chunk[np.argsort(lens[chunk], kind="stable")]
        batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def encode_all(pack: ModelPack, encoders: Mapping[str, torch.nn.Module], samples: Mapping[str, list], device) -> torch.Tensor:
    """Pack and encode every modality of a batch (items by modality): float32[B, M, D] in pack order."""
    embs = []
    for m in pack.modality_names:
        x, lengths = pack_items(samples[m], pack.modality(m).spec)
        embs.append(encoders[m](x.to(device), lengths.to(device)))
    return torch.stack(embs, dim=1)


def batch_items(pack: ModelPack, data, idx) -> dict[str, Any]:
    """The items of samples `idx` of a LabelledSet, by modality (stacked arrays stay stacked)."""
    return {m: take(data.items(m), idx) for m in pack.modality_names}


def train(
    pack_name: str,
    seed: int = 0,
    epochs: int | None = None,
    size: str | Mapping[str, Any] | None = None,
    home: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    lr: float | None = None,
    device: str = "cpu",
    save: bool = True,
    modality_dropout: str | None = None,
    threads: int | None = None,
) -> dict:
    """Train `pack_name` and (if `save`) write it under `home`/models/<name>/.

    `size` is a preset name or a dict of size knobs ({"preset": "tiny", "width": 12, ...}),
    as the pack defines them. The data and the default hyper-parameters come from the
    pack's hooks (`dataset`, `data_description`, `training_defaults`); a pack without data
    raises NotImplementedError before any training. Returns a summary dict with per-epoch
    history, the model dir and the train time. Also returns the trained modules under
    "encoders"/"fusion_head" (not JSON-able; drop them before printing)."""
    from mosel.models.checkpoint import save_model

    knobs = _normalise_size(size)
    pack = get_pack(pack_name, **knobs)
    hp = training_hyperparameters(pack)
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            hp[key] = value
    if int(hp["epochs"]) < 1 or int(hp["batch_size"]) < 1:
        raise ValueError("epochs and batch_size must be >= 1")
    data_split = pack.data_description()  # before training: a pack without data fails here, not at save
    hp.setdefault("modality_dropout", "all")
    if modality_dropout is not None:
        hp["modality_dropout"] = modality_dropout
    if hp["modality_dropout"] not in ("all", "random"):
        raise ValueError("modality_dropout must be 'all' or 'random'")
    bucket = bucket_modality(pack)
    hp.update({"optimizer": "AdamW", "schedule": "one-cycle (10% warm-up, cosine decay)",
               "batching": "shuffled" if bucket is None else
               f"shuffled, bucketed by {bucket} length within groups of 8 batches"})

    if threads is None and torch.device(device).type == "cpu":
        threads = 1
    start = time.perf_counter()
    with _deterministic(), _torch_threads(threads), ThreadPoolExecutor(max_workers=1) as prefetch:
        torch.manual_seed(seed)
        encoders = {m: pack.build_encoder(m).to(device) for m in pack.modality_names}
        head = pack.build_fusion_head().to(device)
        params = [p for e in encoders.values() for p in e.parameters()] + list(head.parameters())
        opt = torch.optim.AdamW(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
        probe = pack.dataset("train", seed=_epoch_seed(seed, 0), data_dir=data_dir)
        n = len(probe)
        steps_per_epoch = (n + hp["batch_size"] - 1) // hp["batch_size"]
        total = steps_per_epoch * int(hp["epochs"])
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=hp["lr"], total_steps=total, pct_start=0.1, anneal_strategy="cos"
        )
        history: list[dict] = []
        bar = tqdm(total=total, desc=f"train {pack_name}", unit="batch", file=sys.stderr, disable=not progress,
                   dynamic_ncols=True)
        try:
            def draw(epoch: int):
                if threads:  # OpenMP thread counts are per calling thread
                    torch.set_num_threads(int(threads))
                return pack.dataset("train", seed=_epoch_seed(seed, epoch), data_dir=data_dir)

            upcoming = prefetch.submit(draw, 1) if hp["epochs"] > 1 else None
            for epoch in range(int(hp["epochs"])):
                if epoch > 0:
                    split = upcoming.result()
                    upcoming = prefetch.submit(draw, epoch + 1) if epoch + 1 < hp["epochs"] else None
                else:
                    split = probe
                rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, 0x5EED]))
                lengths = steps(split.items(bucket)) if bucket is not None else [0] * len(split)
                batches = length_bucketed_batches(rng, lengths, hp["batch_size"])
                for e in encoders.values():
                    e.train()
                head.train()
                loss_sum, correct, seen = 0.0, 0, 0
                for idx in batches:
                    samples = batch_items(pack, split, idx)
                    labels = torch.from_numpy(np.asarray(split.labels, dtype=np.int64)[idx]).to(device)
                    emb = encode_all(pack, encoders, samples, device)
                    full = torch.ones(len(idx), len(pack.modalities), dtype=torch.bool, device=device)
                    logits_full = head(emb, full)
                    loss = F.cross_entropy(logits_full, labels)
                    if hp["modality_dropout"] == "all":
                        for subset in all_subsets(len(pack.modalities))[1:]:
                            loss = loss + F.cross_entropy(head(emb, subset.to(device).expand(len(idx), -1)), labels)
                        loss = loss / (2 ** len(pack.modalities) - 1)
                    else:
                        subset = random_subsets(rng, len(idx), len(pack.modalities)).to(device)
                        loss = loss + F.cross_entropy(head(emb, subset), labels)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    loss_sum += float(loss.detach()) * len(idx)
                    correct += int((logits_full.argmax(1) == labels).sum())
                    seen += len(idx)
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / seen:.3f}")
                history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "train_accuracy_full": correct / seen})
        finally:
            bar.close()
    train_time = time.perf_counter() - start
    for e in encoders.values():
        e.eval()
    head.eval()

    summary: dict[str, Any] = {
        "model": pack.name,
        "seed": seed,
        "size": dict(pack.size),
        "hyperparameters": hp,
        "train_samples_per_epoch": n,
        "history": history,
        "train_time_s": train_time,
        "model_dir": None,
    }
    if save:
        folder = save_model(
            pack, encoders, head, seed=seed, hyperparameters=hp, data_split=data_split,
            train_time_s=train_time, home=home,
            extra={"training": {"history": history, "train_samples_per_epoch": n, "device": str(device)}},
        )
        summary["model_dir"] = str(folder)
    summary["encoders"] = encoders
    summary["fusion_head"] = head
    return summary


def _epoch_seed(seed: int, epoch: int) -> int:
    """Seed of epoch `epoch`'s training draw (`pack.dataset("train", seed=...)`)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def format_history(summary: Mapping[str, Any]) -> str:
    lines = [f"{'epoch':>5}  {'loss':>7}  {'train acc (full)':>16}"]
    for row in summary["history"]:
        lines.append(f"{row['epoch']:>5}  {row['loss']:>7.4f}  {row['train_accuracy_full']:>16.4f}")
    return "\n".join(lines)
