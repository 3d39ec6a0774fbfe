"""The rule editor, generated from the config models, so every rule key of SPEC.md §4 is
editable and validated by the same code that loads the file.

A field's editor follows its type: a switch for a flag, a select for a fixed choice, a text
field for numbers, durations and times, and a YAML flow text for lists and maps (`{MNQ: 2}`,
`[{loss: 100, cooldown: 300}]`). What the admin types is read as YAML, so `30m`, `until_reset`,
`500` and `"17:00"` mean what they mean in the file.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from riskman.config import HHMM, CooldownDuration, PositiveMoney, Seconds, TimeZoneName
from riskman.config_writer import NULL, to_text

Path = tuple[str, ...]
Kind = Literal["bool", "choice", "text", "yaml"]


def _funcs(alias: Any) -> set[int]:
    """Identities of the validator/serializer functions an `Annotated` alias carries."""
    return {id(getattr(item, "func", None)) for item in get_args(alias)[1:]} - {id(None)}


_MONEY = _funcs(PositiveMoney)
_RESET_DURATION = _funcs(CooldownDuration) - _funcs(Seconds)
_DURATION = _funcs(Seconds)
_TIME = _funcs(HHMM)
_ZONE = _funcs(TimeZoneName)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    path: Path
    """Key path inside the rule (`("cooldowns", "per_minute")`)."""
    kind: Kind
    choices: tuple[str, ...] = ()
    optional: bool = False
    hint: str = ""
    default_none: bool = True
    """Whether the key's default is None: then clearing it removes the key from the file;
    otherwise clearing it writes an explicit null ("no limit")."""

    @property
    def key(self) -> str:
        return ".".join(self.path)


def _strip(annotation: Any) -> tuple[Any, bool, set[int]]:
    """The bare type of an annotation, whether None is allowed, and its validator functions."""
    funcs: set[int] = set()
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            funcs |= {id(getattr(m, "func", None)) for m in annotation.__metadata__}
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            optional = optional or len(members) < len(get_args(annotation))
            if len(members) != 1:
                return annotation, optional, funcs
            annotation = members[0]
        else:
            return annotation, optional, funcs


def _hint(bare: Any, funcs: set[int], optional: bool) -> str:
    if funcs & _RESET_DURATION:
        text = "duration (60, 90s, 30m, 1h) or until_reset"
    elif funcs & _DURATION:
        text = "duration: 60, 90s, 30m, 1h"
    elif funcs & _MONEY:
        text = "dollars"
    elif funcs & _TIME:
        text = 'time of day "HH:MM"'
    elif funcs & _ZONE:
        text = "IANA timezone, e.g. America/Chicago"
    elif bare is int:
        text = "whole number"
    elif get_origin(bare) is dict:
        text = "YAML map, e.g. {MNQ: 2}"
    elif get_origin(bare) is list:
        text = "YAML list, e.g. [a, b]"
    else:
        text = ""
    if optional:
        text = f"{text}; empty = none" if text else "empty = none"
    return text


def rule_fields(model: type[BaseModel], prefix: Path = ()) -> list[FieldSpec]:
    """Every editable key of a rule model, nested models flattened to key paths."""
    fields: list[FieldSpec] = []
    for name, info in model.model_fields.items():
        bare, optional, funcs = _strip(info.annotation)
        funcs |= {id(getattr(m, "func", None)) for m in info.metadata}
        path = (*prefix, name)
        default_none = info.get_default(call_default_factory=True) is None
        if isinstance(bare, type) and issubclass(bare, BaseModel):
            fields.extend(rule_fields(bare, path))
        elif bare is bool:
            fields.append(FieldSpec(path, "bool", optional=optional))
        elif get_origin(bare) is Literal:
            choices = tuple(str(arg) for arg in get_args(bare))
            fields.append(FieldSpec(path, "choice", choices, optional))
        else:
            kind: Kind = "yaml" if get_origin(bare) in (list, dict) else "text"
            hint = _hint(bare, funcs, optional)
            fields.append(FieldSpec(path, kind, (), optional, hint, default_none))
    return fields


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = True
    yaml.width = 4096
    return yaml


def parse_text(text: str) -> Any:
    """What the admin typed, read as YAML (None when empty). Raises ValueError."""
    if not text.strip():
        return None
    try:
        return _yaml().load(text)
    except YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"not valid YAML: {problem}") from None


def value_at(data: Mapping[str, Any], path: Path) -> Any:
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def with_edits(data: Mapping[str, Any], edits: Mapping[Path, Any]) -> dict[str, Any]:
    """A deep copy of `data` with `edits` applied (key path -> value)."""

    def copy(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {key: copy(value) for key, value in node.items()}
        if isinstance(node, list):
            return [copy(item) for item in node]
        return node

    result: dict[str, Any] = copy(data)
    for path, value in edits.items():
        node = result
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = None if value is NULL else value
    return result


def validate(model: type[BaseModel], data: Mapping[str, Any]) -> dict[Path, str]:
    """Problems of a rule's data by key path (the model's own validation)."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        problems: dict[Path, str] = {}
        for error in exc.errors():
            loc = tuple(str(part) for part in error.get("loc", ()))
            message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
            problems.setdefault(loc, message)
        return problems
    return {}


def widget_id(rule: str, path: Path) -> str:
    return f"f-{rule}--{'--'.join(path)}"


class RuleForm(Widget):
    """The editors of one rule. `edits()` are the fields the admin changed."""

    DEFAULT_CSS = """
    RuleForm { height: auto; layout: vertical; }
    RuleForm .field { height: auto; }
    """

    def __init__(
        self, rule: str, title: str, model: type[BaseModel], values: Mapping[str, Any]
    ) -> None:
        super().__init__(id=f"form-{rule}", classes="rule-form")
        self.rule = rule
        self.title = title
        self.model = model
        self.fields = rule_fields(model)
        self.initial: dict[Path, Any] = {}
        self.values = dict(values)

    def compose(self) -> ComposeResult:
        yield Label(self.title, classes="form-title")
        for spec in self.fields:
            current = value_at(self.values, spec.path)
            wid = widget_id(self.rule, spec.path)
            with Vertical(classes="field"):
                with Horizontal(classes="field-row"):
                    label = spec.key + (f"  ({spec.hint})" if spec.hint else "")
                    yield Label(label, classes="field-name")
                    if spec.kind == "bool":
                        yield Switch(bool(current), id=wid)
                    elif spec.kind == "choice":
                        yield Select(
                            [(choice, choice) for choice in spec.choices],
                            value=str(current),
                            allow_blank=False,
                            id=wid,
                        )
                    else:
                        yield Input(to_text(current), id=wid)
                yield Static("", id=f"{wid}--error", classes="field-error")
        self._remember()

    def _remember(self) -> None:
        self.initial = {
            spec.path: self._normal(spec, value_at(self.values, spec.path)) for spec in self.fields
        }

    @staticmethod
    def _normal(spec: FieldSpec, value: Any) -> Any:
        if spec.kind == "bool":
            return bool(value)
        if spec.kind == "choice":
            return str(value)
        return to_text(value)

    def _raw(self, spec: FieldSpec) -> Any:
        wid = f"#{widget_id(self.rule, spec.path)}"
        if spec.kind == "bool":
            return self.query_one(wid, Switch).value
        if spec.kind == "choice":
            return str(self.query_one(wid, Select).value)
        return self.query_one(wid, Input).value.strip()

    def edits(self) -> tuple[dict[Path, Any], dict[Path, str]]:
        """(changed key path -> new value, key path -> why it cannot be read)."""
        changed: dict[Path, Any] = {}
        unreadable: dict[Path, str] = {}
        for spec in self.fields:
            raw = self._raw(spec)
            if raw == self.initial[spec.path]:
                continue
            if spec.kind in ("bool", "choice"):
                changed[spec.path] = raw
                continue
            try:
                value = parse_text(raw)
            except ValueError as exc:
                unreadable[spec.path] = str(exc)
                continue
            if value is None and not spec.optional:
                unreadable[spec.path] = "a value is required"
                continue
            if value is None and not spec.default_none:
                value = NULL
            changed[spec.path] = value
        return changed, unreadable

    @property
    def dirty(self) -> bool:
        return any(self._raw(spec) != self.initial[spec.path] for spec in self.fields)

    def show_errors(self, errors: Mapping[Path, str]) -> list[str]:
        """Mark each field with its problem; returns the problems of no single field."""
        placed: set[Path] = set()
        for spec in self.fields:
            wid = widget_id(self.rule, spec.path)
            mine = [path for path in errors if path[: len(spec.path)] == spec.path]
            placed.update(mine)
            message = "; ".join(errors[path] for path in mine)
            self.query_one(f"#{wid}--error", Static).update(message)
            self.query_one(f"#{wid}").set_class(bool(message), "-invalid")
        return [text for path, text in errors.items() if path not in placed]

    def reload(self, values: Mapping[str, Any]) -> None:
        """Show saved values (after a save, or a change made elsewhere)."""
        self.values = dict(values)
        for spec in self.fields:
            current = value_at(self.values, spec.path)
            wid = f"#{widget_id(self.rule, spec.path)}"
            if spec.kind == "bool":
                self.query_one(wid, Switch).value = bool(current)
            elif spec.kind == "choice":
                self.query_one(wid, Select).value = str(current)
            else:
                self.query_one(wid, Input).value = to_text(current)
        self._remember()
        self.show_errors({})
