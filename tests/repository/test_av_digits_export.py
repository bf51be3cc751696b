"""The built-in AV-Digits pack exported to a repository predicts what the pack predicts."""

from __future__ import annotations

import pytest
import torch

from mosel.lifecycle.export import export_pack
from mosel.lifecycle.evaluate import configuration_accuracy
from mosel.lifecycle.model_eval import embed
from mosel.models.checkpoint import load_model
from mosel.repository.data import load_labelled
from mosel.repository.source import open_model


@pytest.mark.parametrize("format", ["auto", "pt2"])
def test_exported_av_digits_gives_the_packs_predictions(tiny_model_home, tmp_path, format):
    folder = export_pack("av-digits", home=tiny_model_home, repository=tmp_path, format=format, with_data=True,
                         data_limit=120)
    exported = open_model("av-digits", repository=tmp_path)
    assert exported.version is not None and exported.version.directory == folder
    pack, encoders, head = load_model("av-digits", tiny_model_home)
    data = load_labelled(folder / "data" / "test.npz", exported.pack)
    with torch.inference_mode():
        eager = embed(pack, encoders, data, batch_size=32)
        served = embed(exported.pack, {m: exported.encoder(m) for m in pack.modality_names}, data, batch_size=32)
    torch.testing.assert_close(served, eager, rtol=1e-4, atol=1e-5)
    built_in = configuration_accuracy(pack, head, eager, data.labels)
    from_repository = configuration_accuracy(exported.pack, exported.fusion_head(), served, data.labels)
    assert [r["correct"] for r in from_repository] == [r["correct"] for r in built_in]
    with torch.inference_mode():
        for subset in range(1, 8):
            present = torch.tensor([[bool(subset >> i & 1) for i in range(3)]]).expand(len(data), -1)
            assert torch.equal(exported.fusion_head()(served, present).argmax(1), head(eager, present).argmax(1))
