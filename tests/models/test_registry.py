"""Plug-in model packs: entry points, register_pack_path / use_packs, MOSEL_PACKS, error
messages, the `--pack` flag, and the data hooks' defaults for packs without data."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mosel.cli.main import main as cli_main
from mosel.config import repo_root
from mosel.models import registry
from mosel.models.labelled import LabelledSet

PACK_SOURCE = textwrap.dedent('''
    import torch
    from torch import nn

    from mosel.models.pack import ModalitySpec, ModelPack, TensorSpec


    class Mean(nn.Module):
        def forward(self, x, lengths):
            return x.mean(dim=1)[:, :4]


    class Head(nn.Module):
        def forward(self, emb, present):
            return emb.sum(dim=1)[:, :2]


    class {cls}(ModelPack):
        def __init__(self, preset="default"):
            super().__init__(name={name!r}, embed_dim=4, labels=("a", "b"),
                             modalities=(ModalitySpec("x", TensorSpec("float32", (4,))),),
                             size={{"preset": preset}})

        def build_encoder(self, modality):
            return Mean()

        def build_fusion_head(self):
            return Head()

        def preprocess(self, modality, raw, field=None):
            return raw


    def make(preset="default"):
        return {cls}(preset)


    def not_a_pack_factory():
        return 42


    class NotAPack:
        pass


    thing = 3
''')


def _write_pack(folder, module: str, name: str, cls: str = "PluginPack") -> None:
    (folder / f"{module}.py").write_text(PACK_SOURCE.format(name=name, cls=cls))
    importlib.invalidate_caches()


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """A registry that forgets what a test registers; tmp_path on sys.path."""
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    monkeypatch.setattr(registry, "_entry_points_read", registry._entry_points_read)
    monkeypatch.setattr(registry, "_env_applied", registry._env_applied)
    monkeypatch.delenv(registry.ENV, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("plug_")]:
        del sys.modules[mod]


def _dist_info(folder, dist: str, entry_points: dict[str, str]) -> None:
    """A real installed distribution as importlib.metadata finds it on sys.path."""
    info = folder / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = ["[mosel.models]"] + [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- entry points


def test_entry_point_packs_are_found_lazily_and_built(isolated):
    _write_pack(isolated, "plug_ep", "ep-pack")
    _dist_info(isolated, "plug-ep-dist", {"ep-pack": "plug_ep:PluginPack", "ep-made": "plug_ep:make"})
    registry._entry_points_read = False
    assert {"ep-pack", "av-digits"} <= set(registry.pack_names())
    assert "plug_ep" not in sys.modules  # listing names imports no pack code
    pack = registry.get_pack("ep-pack", preset="tiny")
    assert pack.name == "ep-pack" and pack.size == {"preset": "tiny"}
    assert "entry point of plug-ep-dist" in registry.pack_origin("ep-pack")
    # registering the same target by path is a no-op that returns the entry point's name
    assert registry.register_pack_path("plug_ep:PluginPack") == "ep-pack"
    # "ep-made" names a factory whose pack is called "ep-pack": building it says so
    with pytest.raises(ValueError, match="registered as 'ep-made'.*named 'ep-pack'"):
        registry.get_pack("ep-made")


def test_entry_point_that_does_not_import_fails_when_built(isolated):
    _dist_info(isolated, "plug-broken", {"broken-pack": "plug_missing_module:Pack"})
    registry._entry_points_read = False
    assert "broken-pack" in registry.pack_names()  # listing still works
    with pytest.raises(ValueError, match="plug_missing_module:Pack.*does not import"):
        registry.get_pack("broken-pack")
    assert "av-digits" in registry.pack_names()


def test_entry_point_clashing_with_a_builtin_is_ignored_with_a_warning(isolated):
    _write_pack(isolated, "plug_clash", "av-digits")
    _dist_info(isolated, "plug-clash", {"av-digits": "plug_clash:PluginPack"})
    registry._entry_points_read = False
    with pytest.warns(RuntimeWarning, match="av-digits.*ignored.*built in"):
        registry.pack_names()
    assert type(registry.get_pack("av-digits", preset="tiny")).__name__ == "AVDigitsPack"


# ---------------------------------------------------------------- register_pack_path / use_packs


def test_register_pack_path_reads_the_name_from_a_default_build(isolated):
    _write_pack(isolated, "plug_a", "path-pack")
    assert registry.register_pack_path("plug_a:PluginPack") == "path-pack"
    assert registry.register_pack_path(" plug_a : PluginPack ") == "path-pack"  # the same target: no-op
    assert "path-pack" in registry.pack_names()
    assert registry.get_pack("path-pack", preset="large").size == {"preset": "large"}
    # a factory function is a pack too
    _write_pack(isolated, "plug_f", "factory-pack")
    assert registry.register_pack_path("plug_f:make") == "factory-pack"
    assert registry.get_pack("factory-pack").name == "factory-pack"
    # the built-in pack by its own path: a no-op
    assert registry.register_pack_path("mosel.models.av_digits.pack:AVDigitsPack") == "av-digits"


def test_a_taken_name_with_another_target_names_both(isolated):
    _write_pack(isolated, "plug_one", "same-name")
    _write_pack(isolated, "plug_two", "same-name", cls="OtherPack")
    registry.register_pack_path("plug_one:PluginPack")
    with pytest.raises(ValueError) as err:
        registry.register_pack_path("plug_two:OtherPack")
    assert "plug_one:PluginPack" in str(err.value) and "plug_two:OtherPack" in str(err.value)
    assert "'same-name'" in str(err.value)
    _write_pack(isolated, "plug_three", "av-digits")
    with pytest.raises(ValueError, match="mosel.models.av_digits.pack:AVDigitsPack.*plug_three:PluginPack"):
        registry.register_pack_path("plug_three:PluginPack")


@pytest.mark.parametrize("spec,needle", [
    ("no_colon_here", "not of the form MODULE:CLASS"),
    ("plug_nowhere:Pack", "module 'plug_nowhere' does not import"),
    ("plug_err:Pack", "module 'plug_err' does not import.*RuntimeError: boom"),
    ("plug_b:Missing", "module 'plug_b' has no attribute 'Missing'"),
    ("plug_b:NotAPack", "is not a subclass of mosel.models.pack.ModelPack"),
    ("plug_b:thing", "neither a ModelPack subclass nor a factory"),
    ("plug_b:not_a_pack_factory", "building it with default knobs failed.*returned int, not a ModelPack"),
    ("mosel.models.pack:ModelPack", "is abstract"),
])
def test_bad_specs_raise_value_errors_naming_the_spec(isolated, spec, needle):
    _write_pack(isolated, "plug_b", "b-pack")
    (isolated / "plug_err.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ValueError, match=needle) as err:
        registry.register_pack_path(spec)
    assert repr(spec) in str(err.value)


def test_use_packs_registers_each_and_accepts_nothing(isolated):
    _write_pack(isolated, "plug_u1", "u-one")
    _write_pack(isolated, "plug_u2", "u-two")
    assert registry.use_packs(["plug_u1:PluginPack", "plug_u2:PluginPack"]) == ["u-one", "u-two"]
    assert registry.use_packs(None) == [] and registry.use_packs(()) == []
    assert {"u-one", "u-two"} <= set(registry.pack_names())


def test_unknown_pack_says_how_to_add_one(isolated):
    with pytest.raises(KeyError) as err:
        registry.get_pack("nothing-like-it")
    assert "--pack MODULE:CLASS" in str(err.value) and "MOSEL_PACKS" in str(err.value)


def test_register_pack_keeps_working(isolated):
    from mosel.models.av_digits.pack import AVDigitsPack

    registry.register_pack("callable-pack", lambda **size: AVDigitsPack(**size))
    with pytest.raises(ValueError, match="builds a pack named 'av-digits'"):
        registry.get_pack("callable-pack")
    with pytest.raises(ValueError, match="already registered"):
        registry.register_pack("av-digits", AVDigitsPack)


# ---------------------------------------------------------------- MOSEL_PACKS


def _python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=str(repo_root()), env=env, capture_output=True,
                          text=True, timeout=120)


def test_mosel_packs_is_applied_in_a_child_process(tmp_path):
    _write_pack(tmp_path, "plug_env_a", "env-a")
    _write_pack(tmp_path, "plug_env_b", "env-b")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(repo_root())]),
           registry.ENV: "plug_env_a:PluginPack, plug_env_b:make"}
    out = _python("import json; from mosel.models import get_pack, pack_names; "
                  "print(json.dumps([pack_names(), get_pack('env-b', preset='p').size]))", env)
    assert out.returncode == 0, out.stderr
    names, size = json.loads(out.stdout)
    assert {"env-a", "env-b", "av-digits"} <= set(names) and size == {"preset": "p"}


def test_bad_mosel_packs_names_the_variable_and_the_spec(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(repo_root()), registry.ENV: "plug_not_there:Pack"}
    out = _python("from mosel.models import get_pack; get_pack('av-digits')", env)
    assert out.returncode != 0
    assert "MOSEL_PACKS" in out.stderr and "plug_not_there:Pack" in out.stderr and "does not import" in out.stderr


# ---------------------------------------------------------------- --pack on the command line


def test_pack_flag_registers_and_bad_specs_exit_cleanly(isolated, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["train", "--pack", "plug_absent:Pack", "--no-progress"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("mosel train: ") and "plug_absent:Pack" in err and "does not import" in err
    with pytest.raises(SystemExit):
        cli_main(["eval", "--pack", "plug_absent:Pack"])
    assert "mosel eval: " in capsys.readouterr().err


def test_pack_without_data_cannot_be_trained_or_sampled(isolated, tmp_path, capsys):
    _write_pack(isolated, "plug_nodata", "no-data")
    assert cli_main(["train", "--pack", "plug_nodata:PluginPack", "--model", "no-data", "--home", str(tmp_path),
                     "--no-progress"]) == 2
    assert "brings no labelled data" in capsys.readouterr().err
    pack = registry.get_pack("no-data")
    for call in (lambda: pack.dataset("test"), pack.data_description, pack.test_samples):
        with pytest.raises(NotImplementedError, match="model pack 'no-data' brings no labelled data"):
            call()
    assert {"epochs", "batch_size", "lr", "weight_decay"} <= set(pack.training_defaults())


def test_model_help_lists_known_packs(capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "known: av-digits" in text and "--pack MODULE:CLASS" in text


# ---------------------------------------------------------------- AV-Digits through the hooks


def test_av_digits_data_hooks():
    from mosel.models.av_digits import dataset as avd

    pack = registry.get_pack("av-digits", preset="tiny", frames=3)
    test = pack.dataset("test")
    assert isinstance(test, LabelledSet) and len(test) == 300 and test.labels.dtype == np.int64
    assert test.items("video")[0].shape == (3, 28, 28)
    assert np.array_equal(test.items("image"), avd.build_split("test").image)  # seed 0 = TEST_SEED
    for m in pack.modality_names:
        pack.validate_item(m, np.ascontiguousarray(test.items(m)[7]))
    assert pack.data_description() == avd.split_description()
    assert pack.training_defaults()["epochs"] == 8
    assert registry.get_pack("av-digits").training_defaults()["epochs"] == 16
    with pytest.raises(ValueError, match="split"):
        pack.dataset("validation")
