"""Typed configs for every stage: one way to write them, load them, override them and explain
what is wrong with them.

    from onthejob.config import load
    from onthejob.eval.config import CompareConfig
    config = load(CompareConfig, "compare.yaml", {"rag": {"k": 3}})

Each stage (train, serve, eval/compare, RAG, sampling) declares a pydantic model built from
``Section``: every field has a default and a one-line description, unknown keys are rejected.
A config comes from three layers, later ones winning: the fields' defaults, a YAML file, and
command-line flags. ``add_options`` turns the fields into argparse flags (their help and default
come from the field, so a default is written once); ``overrides`` reads back the flags the user
actually gave. Loading has no side effects: nothing is read but the YAML itself.

Every problem is reported at once, each on its own line naming its dotted path, the bad value
and what is allowed. A model validator that checks several fields together raises
``cross_field(...)``, which names the fields involved.
"""

from __future__ import annotations

import argparse
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from onthejob.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
DEST = "config:"  # argparse dest prefix of the flags made from fields
MAX_CONFIG_BYTES = 1 << 20  # a config file is settings, not data: 1 MiB is far more than any needs
# YAML aliases let a few hundred bytes stand for billions of values ("billion laughs"): a config
# expands to at most this many values, counted before anything is built from it.
MAX_CONFIG_VALUES = 100_000


class Section(BaseModel):
    """Base of every config model: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class CrossFieldError(ValueError):
    """Problems that span fields, raised by a model validator: ``problems`` holds
    ``(fields, message)`` pairs, the fields named relative to the section that checks them."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{fields}: {message}" for fields, message in problems))


def cross_field(*problems: tuple[str, str]) -> CrossFieldError:
    """The error a model validator raises for problems spanning fields: each problem is
    ``("data.eval, data.eval_split", "give one or the other, not both")``."""
    return CrossFieldError(list(problems))


# --- validation -------------------------------------------------------------------------------


def validate(model: type[M], raw: dict[str, Any], *, source: str = "config") -> M:
    """``raw`` as ``model``, or a ConfigError listing every problem with its dotted path."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        problems = [line for err in e.errors() for line in explain(model, err)]
        raise ConfigError(f"{source}: {len(problems)} problem(s)", problems) from None


def explain(model: type[BaseModel], err: dict) -> list[str]:
    """One pydantic error as lines ``dotted.path: what is wrong (got VALUE)``."""
    where, kind = dotted(err["loc"]), err["type"]
    if kind == "extra_forbidden":
        return [f"{where}: unknown key{_known_keys(model, err['loc'])}"]
    if kind == "missing":
        return [f"{where}: required"]
    error = err.get("ctx", {}).get("error")
    if isinstance(error, CrossFieldError):  # the fields involved, each with the section's path
        prefix = f"{where}." if err["loc"] else ""
        return [f"{', '.join(prefix + f for f in fields.split(', '))}: {message}" for fields, message in error.problems]
    message = err["msg"].removeprefix("Value error, ")
    return [f"{where}: {message} (got {err.get('input')!r})"]


def dotted(loc: tuple) -> str:
    """``("data", "train", 0, "path")`` -> ``data.train[0].path``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _known_keys(model: type[BaseModel], loc: tuple) -> str:
    """'; did you mean X?' and the keys that section allows."""
    section = _model_at(model, loc[:-1])
    if section is None:
        return ""
    keys = list(section.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (allowed here: {', '.join(keys)})"


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The config model at ``loc`` (list indexes and dict keys pass through)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            current = _inner_model(current)
            if current is None:
                return None
        if isinstance(part, int) or part not in current.model_fields:
            continue  # a list index or a dict key: stay on the item type
        current = current.model_fields[part].annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return _inner_model(current)


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside ``list[X]``, ``X | None``, ``dict[str, X]``, if there is one."""
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


# --- loading ---------------------------------------------------------------------------------


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's mapping; a missing file, bad YAML or a non-mapping is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file", fix="see configs/ for examples")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size:,} bytes is too big for a config file (at most {MAX_CONFIG_BYTES:,})",
                          fix="name the config's YAML file, not a data file")
    try:
        loaded = safe_yaml(path.read_text(encoding="utf-8")) or {}
    except ConfigError as e:
        raise ConfigError(f"{path}: {e.message}", fix=e.fix) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})", fix="name the config's YAML file") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config", fix="sections nest a few levels at most") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
    return loaded


def safe_yaml(text: str) -> Any:
    """YAML text as plain values, refusing aliases that expand past ``MAX_CONFIG_VALUES`` or
    refer to themselves (the check walks the parsed nodes, where an alias is one shared node)."""
    loader = yaml.SafeLoader(text)  # what yaml.safe_load does, with the count between its halves
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count_values(node, {}, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _count_values(node: yaml.Node, seen: dict[int, int], open_: set[int]) -> int:
    key = id(node)
    if key in seen:
        return seen[key]
    if key in open_:
        raise ConfigError("a YAML alias refers to itself", fix="write the values out; aliases may not contain themselves")
    open_.add(key)
    children = node.value if isinstance(node, yaml.SequenceNode) else \
        [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
    total = 1 + sum(_count_values(child, seen, open_) for child in children)
    open_.discard(key)
    if total > MAX_CONFIG_VALUES:
        raise ConfigError(f"its YAML aliases expand to more than {MAX_CONFIG_VALUES:,} values",
                          fix="a config is a few dozen settings; write them out instead of nesting aliases")
    seen[key] = total
    return total


def load(model: type[M], path: str | Path | None = None, overrides: dict | list[str] | None = None, *,
         defaults: dict[str, Any] | None = None) -> M:
    """``model`` from ``defaults``, then the YAML file at ``path``, then ``overrides`` (a nested
    dict, or ``--dotted.key VALUE`` strings)."""
    raw: dict[str, Any] = dict(defaults or {})
    if path:
        raw = merge(raw, read_yaml(path))
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides, model)
    raw = merge(raw, overrides or {})
    return validate(model, raw, source=str(path) if path else "command line")


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, section by section."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """``set_dotted(t, "optim.lr", 1e-4)`` sets ``t["optim"]["lr"]``, making sections as needed."""
    *parents, leaf = key.split(".")
    for i, part in enumerate(parents):
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            section = ".".join(parents[: i + 1])
            raise ConfigError(f"{key}: {section} is already set to {tree!r}, so it has no key {leaf!r}",
                              fix=f"give --{section} or --{key}, not both")
    tree[leaf] = value


def parse_overrides(args: list[str], model: type[BaseModel] | None = None) -> dict[str, Any]:
    """``["--optim.lr", "1e-4", "--epochs=2"]`` -> ``{"optim": {"lr": 1e-4}, "epochs": 2}``.

    With ``model``, a boolean key may stand alone (``--gradient_checkpointing --lora.r 8``)."""
    flags = {key: field for key, field, _ in leaves(model)} if model else {}
    out: dict[str, Any] = {}
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if not arg.startswith("--") or len(arg) < 3:
            raise ConfigError(f"unexpected argument {arg!r}", fix="overrides look like --section.key VALUE")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if not eq:
            field = flags.get(key)
            if field is not None and _is_bool(field.annotation) and (not rest or rest[0].startswith("--")):
                value = "true"
            elif not rest:
                raise ConfigError(f"--{key} has no value", fix=f"write --{key} VALUE")
            else:
                value = rest.pop(0)
        field = flags.get(key)
        set_dotted(out, key, value if field is not None and _is_text(field.annotation) else yaml_value(value))
    return out


def yaml_value(text: str) -> Any:
    """A flag's value read as YAML (``8`` -> 8, ``[q_proj, v_proj]`` -> a list, ``null`` -> None);
    text that is no valid YAML stays text, for validation to report with its key."""
    try:
        return safe_yaml(text)
    except (yaml.YAMLError, RecursionError):
        return text
    except ConfigError as e:
        raise ConfigError(f"{text[:40]!r}: {e.message}", fix=e.fix) from None


# --- fields as command-line flags -------------------------------------------------------------


def fields(model: type[BaseModel], defaults: BaseModel | None = None):
    """``(name, field, default, section)`` of each field of ``model``: ``default`` is taken from
    ``defaults`` (the parent's default instance of this section) where given, since a parent may
    default a section differently from the section's own fields; ``section`` is the field's
    section model, or None for a plain setting."""
    for name, field in model.model_fields.items():
        if defaults is not None:
            default = getattr(defaults, name)
        else:
            default = None if field.is_required() else field.get_default(call_default_factory=True)
        yield name, field, default, _section_type(field.annotation)


def leaves(model: type[BaseModel], prefix: str = "", defaults: BaseModel | None = None):
    """``(dotted key, field, default)`` of every setting a flag can carry: nested sections are
    walked, lists of sections (``data.train``) are YAML-only."""
    for name, field, default, sub in fields(model, defaults):
        key = f"{prefix}{name}"
        if sub is not None:
            yield from leaves(sub, key + ".", default if isinstance(default, BaseModel) else None)
        elif _inner_model(field.annotation) is None:
            yield key, field, default


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The section model of ``X`` or ``X | None``; None for anything else."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if _is_union(annotation) and len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _plain(annotation: Any) -> set:
    """The types in ``annotation`` besides None."""
    if _is_union(annotation):
        return {a for a in typing.get_args(annotation) if a is not type(None)}
    return {annotation}


def _is_bool(annotation: Any) -> bool:
    return _plain(annotation) == {bool}


def _is_text(annotation: Any) -> bool:
    """A field that takes any string as it is (no YAML parsing of the flag's value)."""
    return _plain(annotation) <= {str, Path}


def _is_pairs(annotation: Any) -> bool:
    return any(typing.get_origin(a) is dict for a in _plain(annotation))


def _is_text_list(annotation: Any) -> bool:
    """``list[str]`` (or ``list[Path]``), maybe optional: a flag given once per item."""
    plain = _plain(annotation)
    return all(typing.get_origin(a) is list and _is_text(typing.get_args(a)[0]) for a in plain)


def add_options(parser: argparse.ArgumentParser, model: type[BaseModel], *, prefix: str = "",
                aliases: dict[str, str] | None = None, skip: tuple[str, ...] = (),
                metavars: dict[str, str] | None = None) -> None:
    """A flag for every setting of ``model`` (as section ``prefix``, e.g. ``"sampling."``):
    ``--section.key`` (with ``_`` or ``-``), plus the friendlier names in ``aliases``
    (``{"sampling.max_new_tokens": "--max-new-tokens"}``). Flags have no argparse default, so
    ``overrides`` sees only what was given; help shows the field's description and default. A
    dict field takes repeated ``NAME=VALUE``; a list of strings repeated values; a boolean stands
    alone or takes true/false; anything else is read as YAML (``[q_proj, v_proj]``, ``null``)."""
    aliases, metavars = aliases or {}, metavars or {}
    for key, field, default in leaves(model, prefix):
        if key in skip or key.split(".")[0] in skip:
            continue
        names = list(dict.fromkeys(([aliases[key]] if key in aliases else []) + [f"--{key.replace('_', '-')}", f"--{key}"]))
        kwargs: dict[str, Any] = {"dest": DEST + key, "default": argparse.SUPPRESS, "help": _help(field, default)}
        annotation = field.annotation
        if _is_bool(annotation):
            kwargs.update(nargs="?", const=True, metavar="true|false", type=_Value(key, field))
        elif _is_pairs(annotation):
            kwargs.update(action="append", metavar=metavars.get(key, "NAME=VALUE"), type=_pair(names[0]))
        elif _is_text_list(annotation):
            kwargs.update(action="append", metavar=metavars.get(key, "VALUE"))
        else:
            kwargs.update(metavar=metavars.get(key, _metavar(key, annotation)), type=_Value(key, field))
        parser.add_argument(*names, **kwargs)


def overrides(args: argparse.Namespace, positional: dict[str, str] | None = None) -> dict[str, Any]:
    """The settings given as flags, as a nested dict for ``load`` (flags argparse did not know
    are in it too, so that validation names them with the rest: ``lora.rank: unknown key``).
    ``positional`` maps a key to the positional argument that sets it when given
    (``{"model": "model"}`` for ``ojt eval RUN``); it wins over the key's flag."""
    out: dict[str, Any] = {}
    for key, value in getattr(args, "unknown_settings", {}).items():
        set_dotted(out, key, value)
    for name, value in vars(args).items():
        if name.startswith(DEST):
            if isinstance(value, list) and value and isinstance(value[0], tuple):
                value = _pairs_dict(value)
            set_dotted(out, name[len(DEST):], value)
    for key, name in (positional or {}).items():
        value = getattr(args, name, None)
        if value is not None and value != []:  # nargs="*" gives [] when nothing was given
            set_dotted(out, key, value)
    return out


def _help(field, default: Any) -> str:
    if field.is_required():
        return f"{field.description} (required)".replace("%", "%%")
    if default is None or default == [] or default == {}:
        shown = "none"
    elif isinstance(default, bool):
        shown = str(default).lower()
    else:
        shown = str(default)
    return f"{field.description} (default: {shown})".replace("%", "%%")


def _metavar(key: str, annotation: Any) -> str:
    plain = _plain(annotation)
    if plain <= {int}:
        return "N"
    if plain <= {float, int}:
        return "X"
    if typing.get_origin(next(iter(plain))) is typing.Literal:
        return "{" + ",".join(str(a) for a in typing.get_args(next(iter(plain)))) + "}"
    return key.rsplit(".", 1)[-1].upper()


class _Value:
    """argparse ``type=``: text fields take the string as given, the rest are read as YAML
    (``yaml_value``); pydantic checks the result."""

    def __init__(self, key: str, field):
        self.text = _is_text(field.annotation)
        self.__name__ = key  # argparse names the flag's type in its error message

    def __call__(self, value: str) -> Any:
        return value if self.text else yaml_value(value)


def _pair(flag: str):
    def parse(value: str) -> tuple[str, str]:
        name, sep, target = value.partition("=")
        if not sep or not name or not target:
            raise argparse.ArgumentTypeError(f"{value!r} is not NAME=VALUE (write e.g. {flag} support=runs/support)")
        return name, target

    parse.__name__ = flag
    return parse


def _pairs_dict(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, target in pairs:
        if name in out:
            raise ConfigError(f"the name {name!r} is given twice", fix="give each name once")
        out[name] = target
    return out


def split_unknown(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Take the ``--flags`` that the command ``argv`` names does not know out of ``argv``, when
    that command reads a config (``set_defaults(settings=True)``): they are settings for the
    config's validation to judge, all problems at once. Returns (the rest, {key: value})."""
    sub, at = parser, 0
    while True:  # walk down to the (sub)command's own parser
        choices = next((a.choices for a in sub._actions if isinstance(a, argparse._SubParsersAction)), None)
        names = [i for i in range(at, len(argv)) if not argv[i].startswith("-")]
        if not choices or not names or argv[names[0]] not in choices:
            break
        sub, at = choices[argv[names[0]]], names[0] + 1
    if not sub.get_default("settings"):
        return argv, {}
    known = set(sub._option_string_actions)
    rest, unknown, i = list(argv[:at]), {}, at
    while i < len(argv):
        token = argv[i]
        name, eq, value = token.partition("=")
        if token.startswith("--") and len(token) > 2 and name not in known:
            if not eq:
                takes = i + 1 < len(argv) and not argv[i + 1].startswith("-")
                value, i = (argv[i + 1], i + 1) if takes else (True, i)
            unknown[name[2:].replace("-", "_")] = yaml_value(value) if isinstance(value, str) else value
        else:
            rest.append(token)
        i += 1
    return rest, unknown


def add_config_file(parser: argparse.ArgumentParser, *, positional: bool = False, what: str = "settings") -> None:
    """``--config FILE`` (and, where a command has no other positional, ``CONFIG``)."""
    if positional:
        parser.add_argument("config", nargs="?", metavar="CONFIG", help=f"a YAML file of {what}; flags override its keys")
    parser.add_argument("--config", dest="config_file", metavar="FILE", help=f"a YAML file of {what}; flags override its keys")


def config_file(args: argparse.Namespace) -> str | None:
    """The config file named by ``CONFIG`` or ``--config`` (not both)."""
    positional, flag = getattr(args, "config", None), getattr(args, "config_file", None)
    if positional and flag:
        raise ConfigError(f"two config files given ({positional} and --config {flag})", fix="give one")
    return positional or flag


def reference(model: type[BaseModel], prefix: str = "", defaults: Any = None) -> list[str]:
    """One line per key, ``dotted.key (default): description``; the config reference in docs/.
    A section's keys show the defaults of the section's own default (``defaults``)."""
    lines = []
    for name, field, default, sub in fields(model, defaults):
        key = f"{prefix}{name}"
        if sub is not None:
            lines.append(f"- `{key}`: {field.description}")
            lines.extend(reference(sub, key + ".", default if isinstance(default, BaseModel) else None))
            continue
        shown = "required" if field.is_required() and defaults is None else f"default `{default!r}`"
        lines.append(f"- `{key}` ({shown}): {field.description}")
        item = _inner_model(field.annotation)
        if item is not None:  # a list of sections: their keys, as key[].sub
            lines.extend(reference(item, key + "[]."))
    return lines
