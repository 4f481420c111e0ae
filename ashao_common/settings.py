"""Command-line flags derived from a pydantic-settings class: one way every ashao program is configured.

Every field of a settings class is a flag (``--field-name``, or the name a :class:`Flag` gives it) whose
help is the field's docstring, its default and the environment variable that sets it. A flag counts
exactly as if its environment variable held the same text, so both are parsed and validated alike;
flags win over the environment, which wins over the defaults. Settings that do not validate end the
program with a usage error (exit code 2) naming the flag and the variable, never with a traceback.
"""

from __future__ import annotations

import argparse
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import Annotated, Any, Literal, TypeVar

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource
from pydantic_settings.exceptions import SettingsError
from pydantic_settings.sources import DefaultSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

S = TypeVar("S", bound=BaseSettings)


@dataclass(frozen=True, slots=True)
class Flag:
    """How a settings field appears on the command line: ``Annotated[Path, Flag("--tls-ca")]``."""

    name: str | None = None
    """The flag, e.g. ``--core``; the field's name in kebab case if None."""
    env_only: bool = False
    """Settable from the environment only (a secret: flags show in the process list)."""
    default: str | None = None
    """What the help says the default is, when the value itself would not say it well."""
    metavar: str | None = None
    """What the help calls the value (``JSON``); derived from the field's type if None."""
    positional: bool = False
    """Given by position (``ashao workers revoke WORKER_ID``) rather than by a flag; its environment
    variable works as for any other setting."""


ENV_ONLY = Flag(env_only=True)
"""A field with no flag: a secret read from its environment variable only."""


@dataclass(frozen=True, slots=True)
class _Option:
    field: str
    flag: str | None
    env: str
    info: FieldInfo
    meta: Flag


def _options(cls: type[BaseSettings]) -> list[_Option]:
    prefix = str(cls.model_config.get("env_prefix") or "")
    out = []
    for name, info in cls.model_fields.items():
        meta = next((m for m in info.metadata if isinstance(m, Flag)), Flag())
        alias = info.validation_alias
        env = alias if isinstance(alias, str) else f"{prefix}{name}"
        flag = (
            None
            if meta.env_only
            else name.upper()
            if meta.positional
            else meta.name or "--" + name.replace("_", "-")
        )
        out.append(_Option(name, flag, env.upper(), info, meta))
    return out


def _choices(annotation: Any) -> list[str] | None:
    """The values of a ``Literal[...]`` (or ``Literal[...] | None``) annotation, else None."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Literal:
        return [str(a) for a in args]
    literals = [a for a in args if typing.get_origin(a) is Literal]
    if len(literals) == 1 and all(a is type(None) or a is literals[0] for a in args):
        return [str(a) for a in typing.get_args(literals[0])]
    return None


def _metavar(o: _Option) -> str:
    """What the value of a flag is: N, SECONDS, NUMBER, PATH, or the flag's own name (``--core CORE``)."""
    if o.meta.metavar is not None:
        return o.meta.metavar
    kinds = [a for a in typing.get_args(o.info.annotation) or (o.info.annotation,) if a is not type(None)]
    kind = kinds[0] if len(kinds) == 1 else None
    if typing.get_origin(kind) is Annotated:
        kind = typing.get_args(kind)[0]
    if kind is int:
        return "N"
    if kind is float:
        return "SECONDS" if o.field.endswith("_s") else "NUMBER"
    if isinstance(kind, type) and issubclass(kind, PurePath):
        return "PATH"
    return (o.flag or o.field).lstrip("-").replace("-", "_").upper()


def _default_text(o: _Option) -> str:
    if o.meta.default is not None:
        return o.meta.default
    value = o.info.get_default(call_default_factory=True, validated_data={})
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == "" or value == () or value == []:
        return "none"
    return str(value)


def _doc(info: FieldInfo) -> str:
    """The field's docstring on one line, without reStructuredText's double backquotes."""
    return " ".join((info.description or "").replace("``", "").split())


def _help(o: _Option) -> str:
    default = "required" if o.info.is_required() else f"default: {_default_text(o)}"
    return f"{_doc(o.info)} [{default}; env {o.env}]".replace("%", "%%").lstrip()


def settings_parser(cls: type[BaseSettings], *, prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser with one flag per field of ``cls``; given flags land on ``dest`` = field name."""
    options = _options(cls)
    env_only = [o for o in options if o.flag is None]
    epilog = None
    if env_only:
        epilog = "from the environment only:\n" + "\n".join(f"  {o.env}: {_doc(o.info)}" for o in env_only)
    positionals = "".join(f" {o.flag}" for o in options if o.meta.positional)
    p = argparse.ArgumentParser(
        prog=prog,
        usage=f"%(prog)s [options]{positionals}",
        description=description,
        epilog=epilog,
        argument_default=argparse.SUPPRESS,  # only flags given on the command line override anything
        formatter_class=_Formatter,
    )
    for o in options:
        if o.flag is None:
            continue
        if o.meta.positional:
            p.add_argument(o.field, nargs="?", metavar=_metavar(o), help=_help(o))
        elif o.info.annotation is bool:
            p.add_argument(o.flag, dest=o.field, action=argparse.BooleanOptionalAction, help=_help(o))
        else:
            choices = _choices(o.info.annotation)
            metavar = None if choices else _metavar(o)
            p.add_argument(o.flag, dest=o.field, choices=choices, metavar=metavar, help=_help(o))
    return p


class _Formatter(argparse.HelpFormatter):
    """Wraps the flags' help but keeps the epilog's lines (one environment variable per line)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(indent + line for line in text.splitlines())


class _Environ(EnvSettingsSource):
    """The environment source, reading a given mapping rather than ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env_vars = parse_env_vars(
            environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def load_settings(
    cls: type[S],
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    environ: Mapping[str, str] | None = None,
) -> S:
    """Settings from flags (``argv``, ``sys.argv`` if None) over ``environ`` (``os.environ`` if None) over
    the defaults; exits with a usage error (code 2) naming what does not validate."""
    parser = settings_parser(cls, prog=prog, description=description)
    given = vars(parser.parse_args(argv))
    env = dict(os.environ if environ is None else environ)
    for o in _options(cls):
        if o.field in given:
            value = given[o.field]
            env[o.env] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    try:
        return cls(_build_sources=((_Environ(cls, env), DefaultSettingsSource(cls)), {}))
    except ValidationError as exc:
        parser.error("; ".join(describe_error(cls, e) for e in exc.errors()))
    except SettingsError as exc:
        parser.error(str(exc))


def describe_error(cls: type[BaseSettings], error: ErrorDetails) -> str:
    """One validation error as a person reads it: the flag and variable it concerns, where inside the
    value (entry 0, base_url), and what is wrong."""
    loc = list(error["loc"])
    ctx = error.get("ctx") or {}
    message = str(ctx["error"]) if error["type"] == "value_error" and "error" in ctx else error["msg"]
    if not loc:
        return message
    head = loc.pop(0)
    option = next((o for o in _options(cls) if head in (o.field, o.env, o.info.validation_alias)), None)
    where = f"{option.flag} / {option.env}" if option and option.flag else option.env if option else str(head)
    inside = ", ".join(f"entry {p}" if isinstance(p, int) else str(p) for p in loc)
    return f"{where}: {inside}: {message}" if inside else f"{where}: {message}"
