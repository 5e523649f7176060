"""Options declared once per task: name, type, default, choices, range and help.

The same :class:`OptionSet` builds the command line (:meth:`OptionSet.add_arguments`), checks
values before any heavy work (:meth:`OptionSet.validate`, one sentence naming the option and the
fix, :class:`~tttmedical.core.errors.InputError`), turns values back into engine arguments for the
scene layer (:meth:`OptionSet.to_arguments`) and gives the module panels their defaults and ranges
(:attr:`Option.panel_default`, :attr:`Option.minimum`, :attr:`Option.maximum`).

``default=None`` means "the method's own default" (the engine picks it, e.g. Reg-TTR's iteration
count depends on whether an initial field is given); the panel then needs a concrete value to show
when the user overrides the defaults: ``panel_default``.

This module imports neither torch nor slicer: the Slicer panels import it directly.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, Iterable

from .errors import InputError


@dataclasses.dataclass(frozen=True)
class Option:
    name: str                      # Python name (``learning_rate``); the CLI flag unless ``flag`` is set
    kind: type                     # int, float, str or bool (bool: a store_true flag)
    default: Any = None            # None: the method's own default
    help: str = ""
    label: str = ""                # words for error messages ("learning rate"); default from the name
    choices: tuple | None = None
    minimum: float | None = None   # inclusive unless ``exclusive_minimum``
    maximum: float | None = None   # inclusive
    exclusive_minimum: bool = False
    flag: str | None = None        # ``--lr`` instead of ``--learning-rate``
    short: str | None = None       # a one-letter alias (``-o``)
    metavar: str | None = None
    panel_default: Any = None      # value shown by a panel when ``default`` is None
    positional: bool = False
    required: bool = False

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def words(self) -> str:
        return self.label or self.name.replace("_", " ")

    @property
    def shown_default(self) -> Any:
        """The value a panel shows: ``default``, else ``panel_default``."""
        return self.default if self.default is not None else self.panel_default

    def check(self, value: Any) -> None:
        """Raise :class:`InputError` (one sentence) when ``value`` is not allowed; ``None`` is always allowed."""
        if value is None:
            return
        where = self.cli_flag if not self.positional else self.name
        if self.choices is not None and value not in self.choices:
            raise InputError(f"Unknown {self.words} '{value}' ({where}); use one of {', '.join(map(str, self.choices))}.")
        if self.kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"The {self.words} ({where}) must be a number, not {value!r}.")
            if self.kind is int and float(value) != int(value):
                raise InputError(f"The {self.words} ({where}) must be a whole number (got {value}).")
            if not math.isfinite(float(value)):
                raise InputError(f"The {self.words} ({where}) must be a finite number (got {value}).")
            low, high = self.minimum, self.maximum
            if low is not None and (value <= low if self.exclusive_minimum else value < low):
                bound = f"greater than {low:g}" if self.exclusive_minimum else f"at least {low:g}"
                raise InputError(f"The {self.words} ({where}) must be {bound} (got {value:g}); pass a value in {self.range_text()}.")
            if high is not None and value > high:
                raise InputError(f"The {self.words} ({where}) must be at most {high:g} (got {value:g}); pass a value in {self.range_text()}.")

    def range_text(self) -> str:
        low = "-inf" if self.minimum is None else f"{self.minimum:g}"
        high = "inf" if self.maximum is None else f"{self.maximum:g}"
        return f"{'(' if self.exclusive_minimum or self.minimum is None else '['}{low}, {high}{']' if self.maximum is not None else ')'}"


class OptionSet:
    """An ordered collection of :class:`Option` for one command."""

    def __init__(self, *options: Option):
        self.options: dict[str, Option] = {}
        for option in options:
            if option.name in self.options:
                raise ValueError(f"option {option.name!r} declared twice")
            self.options[option.name] = option

    def __getitem__(self, name: str) -> Option:
        return self.options[name]

    def __iter__(self):
        return iter(self.options.values())

    def __contains__(self, name: str) -> bool:
        return name in self.options

    def __add__(self, other: "OptionSet") -> "OptionSet":
        return OptionSet(*self, *other)

    def names(self) -> list[str]:
        return list(self.options)

    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self}

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add every option to ``parser`` (no argparse range checks: :meth:`validate` does them)."""
        for o in self:
            help_text = o.help
            if o.default is not None and o.kind is not bool and "default" not in help_text:
                help_text += f" (default {o.default})"
            if o.positional:
                parser.add_argument(o.name, help=help_text, metavar=o.metavar)
            elif o.kind is bool:
                parser.add_argument(*filter(None, (o.short, o.cli_flag)), dest=o.name, action="store_true", help=help_text)
            else:
                parser.add_argument(*filter(None, (o.short, o.cli_flag)), dest=o.name, type=o.kind, default=o.default, choices=o.choices,
                                    required=o.required, metavar=o.metavar, help=help_text)

    def values(self, namespace: argparse.Namespace | dict) -> dict[str, Any]:
        """The declared options' values from a parsed namespace (or a dict), defaults filled in."""
        data = vars(namespace) if isinstance(namespace, argparse.Namespace) else dict(namespace)
        return {o.name: data.get(o.name, o.default) for o in self}

    def validate(self, values: argparse.Namespace | dict) -> dict[str, Any]:
        """Check every value; returns them as a dict.  Unknown keys are an error (no silent renames)."""
        data = vars(values) if isinstance(values, argparse.Namespace) else dict(values)
        if not isinstance(values, argparse.Namespace):
            unknown = sorted(set(data) - set(self.options))
            if unknown:
                raise InputError(f"Unknown option(s) {', '.join(unknown)}; use {', '.join(self.options)}.")
        out = self.values(data)
        for o in self:
            o.check(out[o.name])
        return out

    def to_arguments(self, values: dict, skip: Iterable[str] = ()) -> list[str]:
        """Command-line arguments for ``values`` (``None`` and ``False`` values are left out)."""
        skip = set(skip)
        args: list[str] = []
        checked = self.validate({k: v for k, v in values.items() if k in self.options})
        for o in self:
            value = checked.get(o.name)
            if o.name in skip or value is None or value is False or o.name not in values:
                continue
            if o.positional:
                args.append(str(value))
            elif o.kind is bool:
                args.append(o.cli_flag)
            elif o.kind is float:
                args += [o.cli_flag, f"{float(value):.10g}"]
            else:
                args += [o.cli_flag, str(value)]
        return args


COMMON = OptionSet(
    Option("device", str, "auto", "auto picks CUDA when present, else CPU; CUDA out-of-memory falls back to CPU",
           choices=("auto", "cpu", "cuda")),
    Option("seed", int, 0, "random seed", minimum=0, maximum=2**32 - 1),
    Option("threads", int, None, "CPU threads for torch (default: as many as there are idle cores at the start, at "
           "most the physical cores); fewer leaves cores to Slicer or other work on a busy machine", label="CPU threads", minimum=1, maximum=4096, metavar="N"),
    Option("progress", str, "bar", "bar: text bar on stderr; json: one JSON event per stdout line (for Slicer); none: quiet",
           label="progress mode", choices=("bar", "json", "none")),
)
"""Options every engine command takes."""


# ------------------------------------------------------------------ declarations every task shares
def output_folder_option() -> Option:
    """``-o/--output OUTDIR`` of a task command: the result folder (replaced as a whole by ``RunContext.finish``)."""
    return Option("output", str, help="output folder (created; a previous result there is replaced as a whole)",
                  short="-o", required=True, metavar="OUTDIR")


def weights_options(help: str, label: str) -> tuple[Option, Option]:
    """``--weights`` (a ``.pt`` replacing the bundled weights; ``help``/``label`` name the network) and
    ``--weights-sha256`` (its expected checksum, by default the one in the model card beside it)."""
    return (Option("weights", str, help=help, label=label),
            Option("weights_sha256", str, help="expected sha256 of --weights (default: the one in its model card "
                                               "<name>.json beside it)", label="weights checksum"))


def training_options(steps: int, steps_help: str, *extra: Option, time_limit_help: str | None = None) -> OptionSet:
    """Options of ``tttmedical train <task>``: ``-o/--output`` (weights, card, report), ``--steps`` (default
    ``steps``), the task's ``extra`` options, ``--time-limit`` in seconds when ``time_limit_help`` is
    given, then :data:`COMMON`."""
    options = [Option("output", str, help="folder for weights, model card and training report", short="-o",
                      required=True, metavar="OUTDIR"),
               Option("steps", int, steps, steps_help, label="number of training steps", minimum=1, maximum=10_000_000),
               *extra]
    if time_limit_help is not None:
        options.append(Option("time_limit", float, None, time_limit_help, label="time limit", minimum=0.0,
                              exclusive_minimum=True))
    return OptionSet(*options) + COMMON
