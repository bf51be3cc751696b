"""AV-Digits: data splits, preprocessing, encoders, training determinism, trained accuracy."""

from __future__ import annotations

import wave

import numpy as np
import pytest
import torch

from mosel.models.av_digits import dataset as avd
from mosel.models.av_digits import digits, fsdd
from mosel.models.items import pack_items
from mosel.lifecycle.evaluate import evaluate
from mosel.models.pack import InvalidInput
from mosel.models.registry import get_pack
from mosel.models.av_digits import pack as pack_module
from mosel.models.checkpoint import load_accuracy, load_model
from mosel.lifecycle.train import train

MODEL = "av-digits"


@pytest.fixture(scope="module")
def test_split():
    return avd.build_split("test")


@pytest.fixture(scope="module")
def train_split():
    return avd.build_split("train", seed=0)


# ---------------------------------------------------------------- trained model


def test_tiny_model_beats_chance_in_every_configuration(tiny_model_home):
    rows = load_accuracy(MODEL, home=tiny_model_home)["configurations"]
    assert len(rows) == 7
    acc = {r["configuration"]: r for r in rows}
    for config, r in acc.items():
        assert r["n"] == 300
        assert r["ci_low"] > 0.3, (config, r)  # chance is 0.1
        assert r["ci_low"] <= r["accuracy"] <= r["ci_high"]
    assert acc["audio+image+video"]["accuracy"] >= 0.9
    singles = max(acc[m]["accuracy"] for m in ("audio", "image", "video"))
    assert acc["audio+image+video"]["accuracy"] > singles  # fusion helps


def test_evaluation_is_reproducible(tiny_model_home):
    again = evaluate(MODEL, home=tiny_model_home, write=False)
    stored = load_accuracy(MODEL, home=tiny_model_home)["configurations"]
    assert [(r["configuration"], r["correct"]) for r in again] == [(r["configuration"], r["correct"]) for r in stored]


def test_training_is_deterministic_for_a_seed(tmp_path):
    size = {"preset": "tiny", "width": 4, "embed_dim": 8}
    runs = [train(MODEL, seed=s, epochs=1, size=size, home=tmp_path / f"h{i}", progress=False, batch_size=256)
            for i, s in enumerate((3, 3, 4))]

    def flat(summary):
        mods = [summary["encoders"][m] for m in ("audio", "image", "video")] + [summary["fusion_head"]]
        return [t for mod in mods for t in mod.state_dict().values()]

    a, b, c = (flat(r) for r in runs)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    assert runs[0]["history"] == runs[1]["history"]


# ---------------------------------------------------------------- encoders


def test_embeddings_do_not_depend_on_the_batch(tiny_model_home, test_split):
    pack, encoders, _ = load_model(MODEL, home=tiny_model_home)
    rng = np.random.default_rng(0)
    short_audio = test_split.audio[int(np.argmin([a.shape[0] for a in test_split.audio]))]
    batches = {
        "audio": [short_audio] + [a for a in test_split.audio if a.shape[0] > short_audio.shape[0] + 20][:5],
        "image": list(test_split.image[:6]),
        "video": [test_split.video[0][:3], test_split.video[1], test_split.video[2][:5],
                  rng.integers(0, 255, (8, 28, 28), dtype=np.uint8)],
    }
    with torch.inference_mode():
        for m, items in batches.items():
            spec = pack.modality(m).spec
            alone = encoders[m](*pack_items(items[:1], spec))
            x, lengths = pack_items(items, spec)
            if spec.sequence:
                assert int(lengths[0]) < x.shape[1], m  # the item really is padded in the batch
            together = encoders[m](x, lengths)
            assert together.shape == (len(items), pack.embed_dim)
            assert torch.allclose(alone[0], together[0], atol=1e-5, rtol=1e-4), m


def test_encoders_check_their_inputs():
    pack = get_pack(MODEL, preset="tiny")
    enc = pack.build_encoder("audio")
    with pytest.raises(ValueError, match="lengths"):
        enc(torch.zeros(2, 5, 32), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="shape"):
        enc(torch.zeros(2, 5, 31), torch.tensor([5, 5]))
    with pytest.raises(ValueError, match="one step"):
        pack.build_encoder("image")(torch.zeros(2, 2, 784), torch.tensor([1, 1]))
    with pytest.raises(KeyError):
        pack.build_encoder("smell")


def test_video_encoder_dominates_compute():
    """Multiply-accumulates per item (8 frames, 28 audio frames): video 65-80% of the full set."""
    pack = get_pack(MODEL)
    macs = {}
    items = {"audio": np.zeros((28, 32), np.float32), "image": np.zeros((28, 28), np.uint8),
             "video": np.zeros((8, 28, 28), np.uint8)}
    for m, item in items.items():
        enc, total = pack.build_encoder(m), [0]

        def hook(mod, inp, out):
            if isinstance(mod, torch.nn.Conv1d | torch.nn.Conv2d):
                total[0] += out.numel() * mod.in_channels * int(np.prod(mod.kernel_size)) // mod.groups
            elif isinstance(mod, torch.nn.Linear):
                total[0] += out.numel() * mod.in_features

        for mod in enc.modules():
            mod.register_forward_hook(hook)
        with torch.no_grad():
            enc(*pack_items([item], pack.modality(m).spec))
        macs[m] = total[0]
    full = sum(macs.values())
    assert 0.65 <= macs["video"] / full <= 0.8, macs
    assert min(macs.values()) < full / 5, macs


# ---------------------------------------------------------------- data and splits


def test_splits_are_disjoint(train_split, test_split):
    def idx(key):
        return int(key.rsplit("_", 1)[1])

    assert {idx(k) for k in test_split.audio_keys} == set(range(5))
    assert min(idx(k) for k in train_split.audio_keys) >= 5
    assert not set(train_split.audio_keys) & set(test_split.audio_keys)
    assert len(set(test_split.audio_keys)) == 300 and len(set(train_split.audio_keys)) == 2700
    for split in (train_split, test_split):
        # image and video never draw from the same picture pool
        assert not set(split.image_ids.tolist()) & set(split.video_ids.tolist())
        # pairing by class: every modality of a sample has the sample's digit
        assert [int(k[0]) for k in split.audio_keys] == split.labels.tolist()
    train_pics = set(train_split.image_ids.tolist()) | set(train_split.video_ids.tolist())
    test_pics = set(test_split.image_ids.tolist()) | set(test_split.video_ids.tolist())
    assert max(train_pics) < 400 <= min(test_pics)


def test_splits_are_deterministic_from_the_seed(test_split):
    again = avd.build_split("test")
    assert np.array_equal(again.image, test_split.image) and np.array_equal(again.video, test_split.video)
    assert all(np.array_equal(a, b) for a, b in zip(again.audio, test_split.audio))
    other = avd.build_split("test", seed=avd.TEST_SEED + 1)
    assert not np.array_equal(other.video, test_split.video)


def test_items_match_the_wire_specs(test_split):
    pack = get_pack(MODEL)
    for i in (0, 150, 299):
        for m, item in test_split.sample(i).items():
            pack.validate_item(m, item)
    assert test_split.video.shape[1:] == (8, 28, 28)


def test_normalisation_constants_are_training_statistics(train_split):
    audio = np.concatenate(train_split.audio).astype(np.float64)
    got = {"audio": (audio.mean(), audio.std()), "image": (train_split.image.mean(), train_split.image.std()),
           "video": (train_split.video.mean(), train_split.video.std())}
    pack = get_pack(MODEL)
    for m, (mean, std) in got.items():
        spec = pack.modality(m).spec
        assert spec.mean == pytest.approx(mean, rel=0.02, abs=0.02), m
        assert spec.std == pytest.approx(std, rel=0.02), m


def test_digits_layout():
    imgs = digits.load_digits()
    assert imgs.shape == (10, 500, 20, 20) and imgs.dtype == np.uint8
    means = imgs.reshape(10, -1).mean(axis=1)
    assert means.min() > 10  # every class has ink
    ones, zeros = imgs[1].astype(float).mean(0), imgs[0].astype(float).mean(0)
    assert ones[:, 9:11].mean() > ones[:, :4].mean() * 3  # a "1" is a vertical stroke in the middle
    assert zeros[9:11, 9:11].mean() < zeros[9:11, 3:6].mean()  # a "0" has a hole


def test_mel_features_batch_equals_single():
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (300, 1000, 4097)]
    batch = fsdd.log_mel_batch(waves)
    for w, feats in zip(waves, batch):
        assert feats.shape == (fsdd.n_frames(len(w)), fsdd.N_MELS)
        assert np.allclose(feats, fsdd.log_mel(w), atol=1e-4)
    fb = fsdd.mel_filterbank()
    assert fb.shape == (fsdd.N_FFT // 2 + 1, fsdd.N_MELS) and bool((fb.sum(0) > 0).all())


def test_mel_features_see_the_tone():
    t = np.arange(8000) / 8000
    low, high = (fsdd.log_mel(np.sin(2 * np.pi * f * t).astype(np.float32)) for f in (300, 3000))
    assert low.mean(0).argmax() < high.mean(0).argmax()


# ---------------------------------------------------------------- preprocessing


def test_preprocess_audio_from_path_and_waveform(tmp_path):
    pack = get_pack(MODEL)
    rec = fsdd.list_recordings()[0]
    from_path = pack.preprocess("audio", rec.path)
    from_wave = pack.preprocess("audio", fsdd.read_wav(rec.path))
    assert from_path.dtype == np.float32 and from_path.shape[1] == 32
    assert np.array_equal(from_path, from_wave)
    pack.validate_item("audio", from_path)
    louder = (fsdd.read_wav(rec.path).astype(np.int32) * 2).clip(-32768, 32767).astype(np.int16)
    assert np.allclose(pack.preprocess("audio", louder), from_path, atol=0.05)  # RMS-normalised


def test_preprocess_rejects_bad_audio(tmp_path):
    pack = get_pack(MODEL)
    with pytest.raises(InvalidInput, match="^clip: .*int16"):
        pack.preprocess("audio", np.zeros(800, np.int32), field="clip")
    with pytest.raises(InvalidInput, match="1-D"):
        pack.preprocess("audio", np.zeros((2, 800), np.int16))
    with pytest.raises(InvalidInput, match="at most"):
        pack.preprocess("audio", np.zeros(8000 * 10, np.int16))
    with pytest.raises(InvalidInput, match="within"):
        pack.preprocess("audio", np.full(800, 3.0, np.float32))
    bad = tmp_path / "stereo48k.wav"
    with wave.open(str(bad), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(np.zeros(480, np.int16).tobytes())
    with pytest.raises(InvalidInput, match="^audio: cannot read WAV.*8000 Hz"):
        pack.preprocess("audio", bad)
    with pytest.raises(InvalidInput, match="cannot read"):
        pack.preprocess("audio", tmp_path / "missing.wav")


def test_preprocess_image_and_video():
    pack = get_pack(MODEL)
    img20 = digits.load_digits()[3, 450]
    img = pack.preprocess("image", img20)
    assert img.shape == (28, 28) and img.dtype == np.uint8 and np.array_equal(img[4:24, 4:24], img20)
    assert np.array_equal(pack.preprocess("image", img), img)
    clip = pack.preprocess("video", [img20, img, img20])
    assert clip.shape == (3, 28, 28) and np.array_equal(clip[1], img)
    assert np.array_equal(pack.preprocess("video", np.stack([img] * 8)), np.stack([img] * 8))


@pytest.mark.parametrize(
    "modality,raw,needle",
    [
        ("image", np.zeros((28, 28), np.float32), "^image: .*uint8"),
        ("image", np.zeros((28, 28, 3), np.uint8), "^image: .*2-D"),
        ("image", np.zeros((24, 24), np.uint8), "^image: .*20x20 or 28x28"),
        ("video", [], "^video: .*at least one frame"),
        ("video", np.zeros((28, 28), np.uint8), r"^video: .*\[frames, height, width\]"),
        ("video", [np.zeros((28, 28), np.uint8), np.zeros((28, 30), np.uint8)], r"^video\[1\]: .*20x20 or 28x28"),
        ("video", [np.zeros((28, 28), np.uint8)] * 65, "^video: .*at most 64"),
        ("smell", np.zeros(3), "^modality: "),
    ],
)
def test_preprocess_rejects_bad_inputs_naming_the_field(modality, raw, needle):
    with pytest.raises(InvalidInput, match=needle):
        get_pack(MODEL).preprocess(modality, raw)


def test_test_samples_are_wire_ready_and_cover_classes():
    pack = get_pack(MODEL, preset="tiny")
    samples = pack.test_samples(limit=40)
    assert len(samples) == 40
    assert len({label for _, label in samples}) == 10
    for items, label in samples[:5]:
        assert set(items) == set(pack.modality_names) and 0 <= label <= 9
        for m, item in items.items():
            pack.validate_item(m, item)
    again = pack.test_samples(limit=40)
    assert all(np.array_equal(a[0]["video"], b[0]["video"]) and a[1] == b[1] for a, b in zip(samples, again))
    assert len(pack.test_samples()) == 300


def test_pack_constants_are_documented():
    assert "synthetic" in pack_module.__doc__.lower() and "synthetic" in avd.__doc__.lower()
