"""The settings machinery (mosel.server.settings) and each service's settings: errors that name
the flag, command lines that reproduce the settings, `--help` that lists every field."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mosel.encoder.settings import EncoderSettings
from mosel.engine.settings import SelectionSettings
from mosel.server.settings import Rule, Settings, SettingsError, setting
from mosel.store.settings import ProfileStoreSettings

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, kw_only=True)
class Toy(Settings):
    MODULE = "toy"
    DESCRIPTION = "a toy program"
    RULES = (Rule("--low", "must not exceed --high", lambda s: s.low <= s.high),)

    name: str = setting(help="what to call it")
    low: int = setting(1, "lower end", at_least=0)
    high: int = setting(5, "upper end (default {default}: plenty)")
    share: float = setting(0.5, "a fraction", above=0, below=1)
    rate: float = setting(2.0, "how fast", above=0)
    tags: tuple[str, ...] = setting((), "a tag (repeatable)", flag="--tag")
    mode: str = setting("a", "how", choices=("a", "b"))
    path: str | None = setting(None, "where (default: nowhere)", metavar="FILE")


# one instance per service with every field away from its default
CHANGED = {
    SelectionSettings: SelectionSettings(
        host="0.0.0.0", port=0, device="cuda:1", log_level="DEBUG", max_message_mb=8, grace_s=2.5, threads=2,
        ready_file="/tmp/ready", profile_store="db-host:1", models=("a", "b"),
        encoders=("audio=h:1,h:2", "b/video=h:3"), policy="mosel", default_budget_ms=250.5, max_job_size=8,
        max_round=16, pipeline_depth=1, reply_margin_ms=0.0, miss_target=0.25, headroom_step_ms=0.0,
        max_queue=10, batch_wait_ms=1.5, max_inflight=7, home="/state", wait_s=0.5, metrics_port=9100,
        http_port=8000, model_repository="/repo", model_versions=("a=2",), packs=("pkg.mod:Pack", "x:Y")),
    EncoderSettings: EncoderSettings(host="::1", port=9, modality="video", model="m", precision="bf16",
                                     max_batch=4, home="/h", threads=3, model_repository="/r", model_version=3,
                                     packs=("pkg.mod:Pack",)),
    ProfileStoreSettings: ProfileStoreSettings(port=1, db="postgresql://u@h:5/db", poll_ms=20.0, grace_s=0.0),
}


def _round_trip(settings):
    parser = argparse.ArgumentParser()
    type(settings).add_arguments(parser)
    return type(settings).from_args(parser.parse_args(settings.to_argv()))


# ----------------------------------------------------------------------------- errors name the flag


@pytest.mark.parametrize("kwargs, flag, message", [
    ({"pipeline_depth": 0}, "--pipeline-depth", "--pipeline-depth must be at least 1"),
    ({"reply_margin_ms": -1.0}, "--reply-margin-ms", "--reply-margin-ms must not be negative"),
    ({"miss_target": 1.0}, "--miss-target", "--miss-target must be between 0 and 1 (exclusive)"),
    ({"miss_target": 0.0}, "--miss-target", "--miss-target must be between 0 and 1 (exclusive)"),
    ({"headroom_step_ms": -0.5}, "--headroom-step-ms", "--headroom-step-ms must not be negative"),
    ({"port": 70000}, "--port", "--port must be between 0 and 65535"),
    ({"default_budget_ms": 0.0}, "--default-budget-ms", "--default-budget-ms must be positive"),
    ({"policy": "fifo"}, "--policy", "--policy must be one of aggressive, agnostic, mosel (got 'fifo')"),
    ({"max_job_size": 33}, "--max-job-size",
     "--max-job-size must not exceed --max-round (a job is never split across rounds)"),
])
def test_selection_errors_name_the_flag(kwargs, flag, message):
    with pytest.raises(SettingsError) as err:
        SelectionSettings(**kwargs)
    assert err.value.flag == flag and str(err.value) == message


def test_replace_is_checked_like_a_construction():
    settings = SelectionSettings(max_round=8, max_job_size=8)
    assert dataclasses.replace(settings, policy="mosel").policy == "mosel"
    with pytest.raises(SettingsError, match="--max-job-size must not exceed --max-round"):
        dataclasses.replace(settings, max_round=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.policy = "mosel"  # type: ignore[misc]


def test_the_other_services_check_their_fields():
    with pytest.raises(SettingsError, match="^--precision must be one of bf16, fp16, fp32"):
        EncoderSettings(modality="audio", precision="int8")
    with pytest.raises(SettingsError, match="^--max-batch must be at least 1$"):
        EncoderSettings(modality="audio", max_batch=0)
    with pytest.raises(TypeError):
        EncoderSettings()  # --modality is required
    with pytest.raises(SettingsError, match="^--poll-ms must be positive$"):
        ProfileStoreSettings(poll_ms=0.0)


def test_a_bad_flag_is_a_usage_error_that_names_it(capsys):
    with pytest.raises(SystemExit) as exit_:
        SelectionSettings.parse(["--miss-target", "2"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "usage: python -m services.selection" in err and "--miss-target must be between 0 and 1" in err
    with pytest.raises(SystemExit):
        EncoderSettings.parse([])
    assert "the following arguments are required: --modality" in capsys.readouterr().err


def test_the_service_refuses_bad_flags_before_it_connects_anywhere():
    """The real selection service: exits 2 at once (no store is running for it to wait for)."""
    proc = subprocess.run([sys.executable, "-m", "services.selection", "--pipeline-depth", "0", "--wait-s", "600"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--pipeline-depth must be at least 1" in proc.stderr


def test_machinery_bounds_rules_and_choices():
    assert Toy(name="x").tags == ()
    for kwargs, message in [({"low": -1}, "--low must not be negative"), ({"share": 1.5}, "--share must be between "
                            "0 and 1 (exclusive)"), ({"rate": 0.0}, "--rate must be positive"),
                            ({"mode": "c"}, "--mode must be one of a, b (got 'c')"),
                            ({"low": 6}, "--low must not exceed --high")]:
        with pytest.raises(SettingsError) as err:
            Toy(name="x", **kwargs)
        assert str(err.value) == message and err.value.flag == message.split()[0]


# ----------------------------------------------------------------------------- command lines


@pytest.mark.parametrize("settings", list(CHANGED.values()) + [SelectionSettings(), ProfileStoreSettings(),
                                                              EncoderSettings(modality="audio")],
                         ids=lambda s: type(s).__name__)
def test_to_argv_reproduces_the_settings(settings):
    assert _round_trip(settings) == settings
    assert type(settings).parse(settings.to_argv()) == settings


def test_to_argv_leaves_defaults_out_and_repeats_lists():
    assert SelectionSettings().to_argv() == []
    assert EncoderSettings(modality="audio").to_argv() == ["--modality=audio"]  # required: always there
    argv = CHANGED[SelectionSettings].to_argv()
    assert argv.count("--model=a") == argv.count("--model=b") == 1
    assert "--encoder=b/video=h:3" in argv and "--pipeline-depth=1" in argv
    # every field differs from its default, so every flag is on the command line
    assert {a.split("=")[0] for a in argv} == {f"--{f.name.replace('_', '-')}" for f in
                                               dataclasses.fields(SelectionSettings)} \
        - {"--models", "--encoders", "--model-versions", "--packs"} | {"--model", "--encoder", "--model-version", "--pack"}


def test_command_runs_the_module_on_this_interpreter():
    settings = ProfileStoreSettings(port=0)
    assert settings.command() == [sys.executable, "-m", "services.profile_store", "--port=0"]


def test_a_value_that_looks_like_a_flag_survives_the_round_trip():
    toy = Toy(name="-n", tags=("-t", "--x"), low=0, high=0)
    assert Toy.parse(toy.to_argv()) == toy


def test_some_fields_on_another_parser():
    """How `mosel up` passes --policy through to its selection services."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--policy-unrelated", default=1)
    SelectionSettings.add_arguments(parser, only=("policy",))
    args = parser.parse_args(["--policy", "mosel"])
    assert SelectionSettings.from_args(args, only=("policy",)) == SelectionSettings(policy="mosel")
    with pytest.raises(SystemExit):
        parser.parse_args(["--pipeline-depth", "3"])  # not added


# ----------------------------------------------------------------------------- --help


def _entries(help_text: str) -> dict[str, str]:
    """Each option's entry in `--help` (its flag, metavar and help, unwrapped), by flag."""
    entries: dict[str, str] = {}
    current = None
    for line in help_text.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            entries[current] = ""
        if current:
            entries[current] += " " + line.strip()
    return {flag: " ".join(text.split()) for flag, text in entries.items()}


def _missing_from_help(cls, help_text: str) -> list[str]:
    """Fields without an entry in the help, or whose entry does not show their default."""
    entries = _entries(help_text)
    missing = []
    for f in dataclasses.fields(cls):
        flag = f.metadata["mosel.setting"].flag or "--" + f.name.replace("_", "-")
        default = f.default
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        if flag not in entries or (default not in (None, (), dataclasses.MISSING)
                                   and f"(default {shown}" not in entries[flag]):
            missing.append(f.name)
    return missing


@pytest.mark.parametrize("cls", list(CHANGED), ids=lambda c: c.__name__)
def test_help_lists_every_field_with_its_default(cls):
    text = cls.parser().format_help()
    assert _missing_from_help(cls, text) == []
    assert " ".join(cls.DESCRIPTION.split()) in " ".join(text.split())


def test_the_help_check_sees_a_missing_flag_and_a_wrong_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # one line per entry, so the edits below find their text
    text = SelectionSettings.parser().format_help()
    assert _missing_from_help(SelectionSettings, text.replace("--miss-target", "--miss")) == ["miss_target"]
    assert _missing_from_help(SelectionSettings, text.replace("(default 2; 1 = strict", "(default 3; 1 = strict")) \
        == ["pipeline_depth"]


def test_help_text_takes_the_default_where_it_says_so():
    text = " ".join(Toy.parser().format_help().split())
    assert "upper end (default 5: plenty)" in text and "lower end (default 1)" in text
    assert "where (default: nowhere)" in text and "--path FILE" in text and "--mode {a,b}" in text
    assert "usage: python -m toy" in text and "--name NAME" in text


def test_services_help_runs(tmp_path):
    for module in ("services.selection", "services.encoder", "services.profile_store"):
        proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0 and f"usage: python -m {module}" in proc.stdout, proc.stderr


# ----------------------------------------------------------------------------- what the settings build


def test_policy_options_follow_the_policy():
    assert SelectionSettings().policy_options() == {}
    assert SelectionSettings(policy="aggressive", max_round=16, max_job_size=16).policy_options() == {"max_round_items": 16}
    mosel = SelectionSettings(policy="mosel", reply_margin_ms=4.0, miss_target=0.02, headroom_step_ms=0.0)
    assert mosel.policy_options() == {"max_round_items": 32, "reply_margin_s": 0.004, "miss_target": 0.02,
                                      "headroom_step_s": 0.0}
    policy = mosel.build_policy(max_round_items=8)
    assert policy.name == "mosel" and policy.max_round_items == 8 and policy.reply_margin_s == 0.004


def test_defaults_are_the_schedulers():
    from mosel.scheduling.headroom import DEFAULT_HEADROOM_STEP_S, DEFAULT_MISS_TARGET
    from mosel.scheduling.predict import DEFAULT_PIPELINE_DEPTH
    from mosel.scheduling.profiled import DEFAULT_REPLY_MARGIN_S

    options = SelectionSettings(policy="mosel").policy_options()
    assert options["reply_margin_s"] == DEFAULT_REPLY_MARGIN_S and options["headroom_step_s"] == DEFAULT_HEADROOM_STEP_S
    assert options["miss_target"] == DEFAULT_MISS_TARGET
    assert SelectionSettings().pipeline_depth == DEFAULT_PIPELINE_DEPTH


@pytest.mark.parametrize("pin", ["a", "a=", "=2", "a=0", "a=x"])
def test_a_malformed_version_pin_names_its_flag(pin):
    with pytest.raises(SettingsError) as err:
        SelectionSettings(model_versions=(pin,))
    assert err.value.flag == "--model-version"
    assert SelectionSettings(model_versions=("a=2", "b=10")).pinned_versions() == {"a": 2, "b": 10}
