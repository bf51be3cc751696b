"""Settings machinery: a frozen dataclass whose fields are a program's command-line flags.

A field made with `setting(default, help, ...)` carries all its flag needs: the help text
(the default is appended, or put where the text says `{default}`), the flag name (default
`--field-name`), a metavar, choices and bounds; a field annotated `tuple[X, ...]` is a
repeatable flag, one without a default a required one. From the class alone:

    settings = SelectionSettings.parse(argv)              # flags built from the fields
    SelectionSettings.add_arguments(parser, only=("policy",))   # some of them on another parser
    SelectionSettings.from_args(namespace, only=("policy",))    # ... and the object back
    settings.to_argv()                                     # the command line that reproduces it
    settings.command()                                     # [python, -m, MODULE, *to_argv()]
    dataclasses.replace(settings, policy="mosel")          # checked again, like any construction

Every construction runs `validate()`, the one place that checks choices, bounds and the
class's cross-field RULES; a failure is a SettingsError naming the flag
(`--pipeline-depth must be at least 1`), which `parse()` turns into argparse's usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

_KEY = "mosel.setting"


class SettingsError(ValueError):
    """A setting out of its bounds or choices, or settings that contradict each other."""

    def __init__(self, flag: str, message: str):
        super().__init__(message)
        self.flag = flag


@dataclass(frozen=True)
class Spec:
    """What a field's flag needs beyond its name, type and default."""

    help: str
    flag: str | None = None  # None: --field-name
    metavar: str | None = None
    choices: tuple | None = None
    at_least: float | None = None
    at_most: float | None = None
    above: float | None = None
    below: float | None = None

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed (a phrase after the flag), or None."""
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(map(str, self.choices))} (got {value!r})"
        low = self.at_least if self.at_least is not None else self.above
        high = self.at_most if self.at_most is not None else self.below
        inside = ((self.at_least is None or value >= self.at_least) and (self.above is None or value > self.above)
                  and (self.at_most is None or value <= self.at_most) and (self.below is None or value < self.below))
        if inside:
            return None
        if low is not None and high is not None:
            exclusive = " (exclusive)" if self.above is not None and self.below is not None else ""
            return f"must be between {low:g} and {high:g}{exclusive}"
        if self.at_least is not None:
            return "must not be negative" if self.at_least == 0 else f"must be at least {self.at_least:g}"
        if self.above is not None:
            return "must be positive" if self.above == 0 else f"must be above {self.above:g}"
        return f"must be at most {self.at_most:g}" if self.at_most is not None else f"must be below {self.below:g}"


def setting(default: Any = MISSING, help: str = "", *, flag: str | None = None, metavar: str | None = None,
            choices: Sequence | None = None, at_least: float | None = None, at_most: float | None = None,
            above: float | None = None, below: float | None = None) -> Any:
    """A settings field; no default = a required flag."""
    spec = Spec(help, flag, metavar, tuple(choices) if choices is not None else None, at_least, at_most, above, below)
    return dataclasses.field(default=default, metadata={_KEY: spec})


def redefault(cls: type, name: str, default: Any) -> Any:
    """`name` of settings class `cls` again, with another default (e.g. each service's port)."""
    base = next(f for f in dataclasses.fields(cls) if f.name == name)
    return dataclasses.field(default=default, metadata=base.metadata)


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: `holds(settings)` must be true, else `message` (which names `flag`)."""

    flag: str
    message: str
    holds: Callable[[Any], bool]


@dataclass(frozen=True)
class _Flag:
    field: dataclasses.Field
    spec: Spec
    kind: type  # the type of one value
    repeats: bool

    @property
    def name(self) -> str:
        return self.spec.flag or "--" + self.field.name.replace("_", "-")

    @property
    def required(self) -> bool:
        return self.field.default is MISSING

    def help(self, override: str | None = None) -> str:
        text = override if override is not None else self.spec.help
        if self.required or self.field.default in (None, ()):
            return text
        shown = f"{self.field.default:g}" if isinstance(self.field.default, float) else str(self.field.default)
        return text.replace("{default}", shown) if "{default}" in text else f"{text} (default {shown})"


def _value_type(hint: Any) -> tuple[type, bool]:
    """(type of one value, repeatable) of an annotation: X, X | None or tuple[X, ...]."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        return typing.get_args(hint)[0], True
    if origin in (types.UnionType, typing.Union):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return inner, False
    return hint, False


@dataclass(frozen=True)
class Settings:
    """Base of every settings class (see the module doc). Subclasses are
    `@dataclass(frozen=True, kw_only=True)` and set MODULE and DESCRIPTION."""

    MODULE: ClassVar[str] = ""  # run as `python -m MODULE` with these settings
    DESCRIPTION: ClassVar[str] = ""
    RULES: ClassVar[tuple[Rule, ...]] = ()

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def _flags(cls, only: Sequence[str] | None = None) -> Iterator[_Flag]:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if only is None or f.name in only:
                yield _Flag(f, f.metadata[_KEY], *_value_type(hints[f.name]))

    def validate(self) -> None:
        """Raise SettingsError for the first value out of its choices or bounds, or broken rule."""
        for flag in self._flags():
            value = getattr(self, flag.field.name)
            for v in value if flag.repeats else (value,):
                problem = None if v is None else flag.spec.problem(v)
                if problem:
                    raise SettingsError(flag.name, f"{flag.name} {problem}")
        for klass in type(self).__mro__:
            for rule in vars(klass).get("RULES", ()):
                if not rule.holds(self):
                    raise SettingsError(rule.flag, f"{rule.flag} {rule.message}")

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of field `name`."""
        return next(f.default for f in dataclasses.fields(cls) if f.name == name)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                      only: Sequence[str] | None = None, help: Mapping[str, str] | None = None) -> None:
        """One flag per field (or per field in `only`); `help` rewords some for another context."""
        for flag in cls._flags(only):
            options: dict[str, Any] = {"dest": flag.field.name, "type": flag.kind,
                                       "help": flag.help((help or {}).get(flag.field.name))}
            if flag.spec.choices is not None:
                options["choices"] = flag.spec.choices
            else:
                options["metavar"] = flag.spec.metavar or flag.name[2:].upper().replace("-", "_")
            if flag.repeats:
                options.update(action="append", default=None)  # None: the field default (an empty tuple)
            elif flag.required:
                options["required"] = True
            else:
                options["default"] = flag.field.default
            parser.add_argument(flag.name, **options)

    @classmethod
    def from_args(cls, namespace: argparse.Namespace, only: Sequence[str] | None = None):
        """The settings from flags parsed by add_arguments (fields not in `only` keep their default)."""
        values = {}
        for flag in cls._flags(only):
            value = getattr(namespace, flag.field.name)
            if flag.repeats:
                value = tuple(value) if value is not None else flag.field.default
            values[flag.field.name] = value
        return cls(**values)

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=f"python -m {cls.MODULE}", description=cls.DESCRIPTION)
        cls.add_arguments(parser)
        return parser

    @classmethod
    def parse(cls, argv: Sequence[str] | None = None):
        """Settings from a command line; exits with argparse's usage error (code 2) if invalid."""
        parser = cls.parser()
        namespace = parser.parse_args(argv)
        try:
            return cls.from_args(namespace)
        except SettingsError as exc:
            parser.error(str(exc))

    def to_argv(self) -> list[str]:
        """The flags that `parse()` turns back into these settings (defaults left out).
        `--flag=value`, one token each, so a value that starts with "-" parses as a value."""
        argv = []
        for flag in self._flags():
            value = getattr(self, flag.field.name)
            if not flag.required and value == flag.field.default:
                continue
            argv += [f"{flag.name}={v}" for v in (value if flag.repeats else (value,))]
        return argv

    def command(self) -> list[str]:
        """The process that runs MODULE with these settings, on this interpreter."""
        return [sys.executable, "-m", self.MODULE, *self.to_argv()]
