"""Load a site YAML and report every problem as ``file:line: field.path: message``.

The YAML is parsed once into a node tree (for line numbers) and constructed
from that same tree; pydantic's error locations are then walked down the tree
to the node each error is about.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .config import IDENTIFIER_PATTERN, Loc, SiteConfig
from .interpolate import interpolate

_TAG_KEYS = ("type", "kind")  # discriminator keys whose values pydantic puts in `loc`


class ConfigError(Exception):
    """The config cannot be used; ``problems`` holds one line per problem."""

    def __init__(self, path: Path | str, problems: list[Problem]) -> None:
        self.path = Path(path)
        self.problems = problems
        lines = "\n".join(str(p) for p in problems)
        super().__init__(f"{self.path}: {len(problems)} problem(s)\n{lines}")


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> SiteConfig:
    """Read, parse and validate a site config; raises :class:`ConfigError`.
    ``${NAME}`` in values comes from ``env`` (default: this process's
    environment; edge_agent/interpolate.py)."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [Problem(name, 0, "", f"cannot read: {exc.strerror}")]) from None
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            unset = [
                Problem(name, node.start_mark.line + 1, _dotted(where), msg)
                for node, where, msg in (
                    interpolate(root, os.environ if env is None else env, loader)
                    if root is not None
                    else ()
                )
            ]
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, [Problem(name, line, "", f"invalid YAML: {problem}")]) from None
    if root is None:
        raise ConfigError(path, [Problem(name, 1, "", "the file is empty")])

    problems = [*unset, *_duplicate_keys(name, root)]
    cfg = None
    if not unset:  # else its validation would only repeat the holes the variables left
        try:
            cfg = SiteConfig.model_validate(data, context={"base_dir": path.parent})
        except ValidationError as exc:
            problems += _problems(name, root, exc)
    if problems or cfg is None:
        problems.sort(key=lambda p: p.line)
        raise ConfigError(path, problems)
    return cfg


# ------------------------------------------------------------- error mapping


def _problems(name: str, root: yaml.Node, exc: ValidationError) -> Iterator[Problem]:
    for err in exc.errors():
        loc: Loc = tuple(err["loc"])
        ctx = err.get("ctx") or {}
        kind = err["type"]
        if kind == "config_rule":
            for rel, msg in ctx["problems"]:
                yield _locate(name, root, loc + tuple(rel), msg)
            continue
        msg = err["msg"]
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            key = str(ctx.get("discriminator", "type")).strip("'")
            expected = str(ctx.get("expected_tags", "")).replace("'", "")
            if kind == "union_tag_invalid":
                msg = f"unknown {key} {ctx.get('tag')!r}; expected one of: {expected}"
            else:
                msg = f"missing required key ({key})"
            loc = loc + (key,)
        elif kind == "missing":
            msg = "missing required key"
        elif kind == "extra_forbidden":
            msg = _unknown_key_message(loc)
        elif kind == "string_pattern_mismatch" and ctx.get("pattern") == IDENTIFIER_PATTERN:
            msg = "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        else:
            msg = msg.removeprefix("Value error, ").replace("Input should be", "should be")
        yield _locate(name, root, loc, msg)


def _locate(name: str, root: yaml.Node, loc: Loc, msg: str) -> Problem:
    """Walk ``loc`` down the node tree; the line is the deepest node that exists
    (for a missing key: the mapping that should hold it)."""
    node: yaml.Node | None = root
    line = root.start_mark.line + 1
    path: list[str | int] = []
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            if _is_tag(node, part):  # a union member picked by this mapping's type/kind
                continue
            found = _child(node, str(part))
            if found is not None:
                key_node, node = found
                line = key_node.start_mark.line + 1
            else:
                node = None
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            node = None
        path.append(part)
    return Problem(name, line, _dotted(path), msg)


def _child(node: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return key_node, value_node
    return None


def _is_tag(node: yaml.MappingNode, part: str | int) -> bool:
    for key in _TAG_KEYS:
        found = _child(node, key)
        if found is not None and isinstance(found[1], yaml.ScalarNode) and found[1].value == part:
            return True
    return False


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _duplicate_keys(
    name: str, node: yaml.Node, path: tuple[str | int, ...] = ()
) -> Iterator[Problem]:
    """PyYAML keeps the last of two equal keys silently; an installer wants to know."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                yield Problem(
                    name, key_node.start_mark.line + 1, _dotted((*path, key)), "duplicate key"
                )
            seen.add(key)
            yield from _duplicate_keys(name, value_node, (*path, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(name, item, (*path, i))


# ----------------------------------------------------- "did you mean" helper


def _unknown_key_message(loc: Loc) -> str:
    allowed = _allowed_keys(loc[:-1])
    if not allowed:
        return "unknown key"
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key; {hint}allowed: {', '.join(allowed)}"


def _allowed_keys(loc: Loc) -> list[str]:
    """Field names of the model at ``loc`` (union tags in ``loc`` pick the member)."""
    model: Any = SiteConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(model, list):  # a union: `part` is the tag that picked the member
            model = next((m for m in model if _tag_of(m) == part), None)
        elif _is_model(model) and part in model.model_fields:
            model = _unwrap(model.model_fields[part].annotation)
        elif not (_is_model(model) and _tag_of(model) == part):  # one-member union
            return []
    return list(model.model_fields) if _is_model(model) else []


def _unwrap(annotation: Any) -> Any:
    """list[X] -> X; X | Y -> [X, Y] (a union); X | None -> X."""
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    if getattr(annotation, "__origin__", None) is list:
        return _unwrap(args[0])
    if args and all(_is_model(a) for a in args):
        return args if len(args) > 1 else args[0]
    if hasattr(annotation, "__metadata__"):  # Annotated[...]
        return _unwrap(annotation.__origin__)
    return annotation


def _is_model(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, BaseModel)


def _tag_of(model: Any) -> Any:
    for key in _TAG_KEYS:
        field = model.model_fields.get(key)
        if field is not None and getattr(field.annotation, "__args__", None):
            return field.annotation.__args__[0]
    return None
