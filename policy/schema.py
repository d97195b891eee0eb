"""The JSON Schema of a policy bundle, for editors and CI linters; ``python -m policy.schema`` prints it.

Built from ``msgspec.inspect.type_info`` of the model rather than by ``msgspec.json.schema``, which cannot
encode field defaults of custom types such as Duration (it takes no enc_hook: msgspec/msgspec#679). Field
descriptions come from the model's field docstrings. Cross-field rules (no repeated ports, CIDRs without host
bits, ...) are beyond JSON Schema: ``meshctl policy validate`` checks those.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Final

import msgspec
import msgspec.inspect as mi

from policy.codec import enc_hook
from policy.duration import DURATION_PATTERN, Duration
from policy.field_docs import field_docs, prose
from policy.model import Policy

_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_DURATION_SCHEMA: Final[dict[str, object]] = {
    "type": "string",
    "pattern": DURATION_PATTERN,
    "description": "A span of time: a number and one unit (ms, s, m or h), e.g. 250ms, 10s, 5m, 1h.",
    "examples": ["250ms", "10s", "5m", "1h"],
}


def json_schema() -> dict[str, object]:
    """The bundle's JSON Schema (draft 2020-12); named types live under ``$defs``."""
    builder = _SchemaBuilder()
    root = builder.schema(mi.type_info(Policy))
    return {
        "$schema": _DIALECT,
        "title": "triomesh policy bundle",
        "description": (
            "A triomesh policy bundle (YAML, JSON or TOML). Cross-field rules are checked by "
            "`meshctl policy validate`; see docs/policy.md."
        ),
        **root,
        # policy.load refuses a document that sets no fields: that is what a truncated write looks like.
        "minProperties": 1,
        "$defs": builder.defs,
    }


def schema_hook(tp: type) -> dict[str, object]:
    """The schema of a custom type used in the model (the role of msgspec's ``schema_hook``)."""
    if tp is Duration:
        return dict(_DURATION_SCHEMA)
    raise NotImplementedError(f"no JSON Schema for {tp.__name__}")


class _SchemaBuilder:
    def __init__(self) -> None:
        self.defs: dict[str, object] = {}

    def schema(self, tp: mi.Type) -> dict[str, object]:
        match tp:
            case mi.Metadata():
                return {**self.schema(tp.type), **(tp.extra_json_schema or {})}
            case mi.StructType():
                return self._ref(tp.cls.__name__, lambda: self._struct(tp))
            case mi.EnumType():
                return self._ref(tp.cls.__name__, lambda: _enum(tp))
            case mi.ListType() | mi.VarTupleType() | mi.SetType() | mi.FrozenSetType():
                return self._array(tp)
            case mi.UnionType():
                return {"anyOf": [self.schema(member) for member in tp.types]}
            case mi.CustomType():
                return schema_hook(tp.cls)
        return _scalar(tp)

    def _ref(self, name: str, build: Callable[[], dict[str, object]]) -> dict[str, object]:
        if name not in self.defs:
            self.defs[name] = {}  # reserve first: a self-referencing type must not recurse forever
            self.defs[name] = build()
        return {"$ref": f"#/$defs/{name}"}

    def _struct(self, tp: mi.StructType) -> dict[str, object]:
        docs = field_docs(tp.cls)
        properties: dict[str, object] = {}
        for field in tp.fields:
            prop = self.schema(field.type)
            if field.name in docs:
                prop["description"] = prose(docs[field.name])
            if field.default is not msgspec.NODEFAULT:
                # Through JSON, not to_builtins (which keeps tuples): the schema must be plain JSON values.
                prop["default"] = msgspec.json.decode(msgspec.json.encode(field.default, enc_hook=enc_hook))
            properties[field.encode_name] = prop
        schema: dict[str, object] = {"title": tp.cls.__name__}
        if tp.cls.__doc__:
            schema["description"] = _first_paragraph(tp.cls.__doc__)
        schema |= {"type": "object", "properties": properties}
        required = [field.encode_name for field in tp.fields if field.required]
        if required:
            schema["required"] = required
        if tp.forbid_unknown_fields:
            schema["additionalProperties"] = False
        return schema

    def _array(self, tp: mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType) -> dict[str, object]:
        schema: dict[str, object] = {"type": "array", "items": self.schema(tp.item_type)}
        if tp.min_length is not None:
            schema["minItems"] = tp.min_length
        if tp.max_length is not None:
            schema["maxItems"] = tp.max_length
        if isinstance(tp, mi.SetType | mi.FrozenSetType):
            schema["uniqueItems"] = True
        return schema


def _enum(tp: mi.EnumType) -> dict[str, object]:
    schema: dict[str, object] = {"title": tp.cls.__name__}
    if tp.cls.__doc__:
        schema["description"] = _first_paragraph(tp.cls.__doc__)
    schema["enum"] = [member.value for member in tp.cls]
    return schema


def _scalar(tp: mi.Type) -> dict[str, object]:
    match tp:
        case mi.IntType() | mi.FloatType():
            schema: dict[str, object] = {"type": "integer" if isinstance(tp, mi.IntType) else "number"}
            bounds = {
                "minimum": tp.ge,
                "exclusiveMinimum": tp.gt,
                "maximum": tp.le,
                "exclusiveMaximum": tp.lt,
                "multipleOf": tp.multiple_of,
            }
            schema |= {key: value for key, value in bounds.items() if value is not None}
        case mi.StrType():
            schema = {"type": "string"}
            lengths = {"minLength": tp.min_length, "maxLength": tp.max_length, "pattern": tp.pattern}
            schema |= {key: value for key, value in lengths.items() if value is not None}
        case mi.BoolType():
            schema = {"type": "boolean"}
        case mi.NoneType():
            schema = {"type": "null"}
        case mi.LiteralType():
            schema = {"enum": list(tp.values)}
        case _:
            raise NotImplementedError(f"no JSON Schema for {tp!r}")
    return schema


def _first_paragraph(doc: str) -> str:
    return prose(doc.strip().split("\n\n")[0])


def render() -> str:
    """The schema as the text committed in docs/policy.schema.json."""
    return json.dumps(json_schema(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
