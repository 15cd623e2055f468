"""Write docs/configuration.md from the pydantic models of the agents' YAML files, so the reference
is never written twice and cannot drift from the code.

    python scripts/gen_config_docs.py --write   # regenerate the page
    python scripts/gen_config_docs.py --check   # exit 1 if the committed page differs (the docs test)

Every pydantic model defined in a module of the ``agents`` package is found; a model no other model
uses as a field type is a file of its own (a section of the page), so a new YAML file or key appears
here by itself. A field without ``description=`` is an error: say what the key does where it is defined.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import inspect
import pkgutil
import sys
import types
import typing
from pathlib import Path

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "configuration.md"
COMMAND = "python scripts/gen_config_docs.py --write"
PACKAGE = "agents"


def config_models() -> list[type[BaseModel]]:
    """Every pydantic model defined in the agents package (imported module by module), by name."""
    sys.path.insert(0, str(ROOT))
    package = importlib.import_module(PACKAGE)
    found: dict[str, type[BaseModel]] = {}
    for info in pkgutil.walk_packages(package.__path__, PACKAGE + "."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, BaseModel) and obj.__module__ == info.name
                    and obj.model_fields):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def nested_models(annotation) -> list[type[BaseModel]]:
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in nested_models(arg)]


def roots(models: list[type[BaseModel]]) -> list[type[BaseModel]]:
    used = {m for model in models for f in model.model_fields.values() for m in nested_models(f.annotation)}
    return [m for m in models if m not in used]


def type_name(annotation) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        names = dict.fromkeys(type_name(a) for a in rest)  # one "mapping (below)" for several choices
        return " \\| ".join(names) + (", optional" if len(rest) < len(args) else "")
    if origin in (list, tuple, set):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict or annotation is dict:
        return f"mapping of name → {type_name(args[1])}" if len(args) == 2 and nested_models(args[1]) else "mapping"
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return "mapping (below)"
    if annotation is Path:
        return "path"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(annotation, str(annotation))


def yaml_value(value) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def default_of(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        return "(computed, see effect)"
    if isinstance(field.default, BaseModel):
        return "its keys' defaults"
    return f"`{yaml_value(field.default)}`" if field.default is not PydanticUndefined else ""


def constraints_of(field: FieldInfo) -> str:
    words = []
    for c in field.metadata:
        for cls, text in ((annotated_types.Gt, "> {}"), (annotated_types.Ge, "≥ {}"), (annotated_types.Lt, "< {}"),
                          (annotated_types.Le, "≤ {}"), (annotated_types.MinLen, "length ≥ {}"),
                          (annotated_types.MaxLen, "length ≤ {}")):
            if isinstance(c, cls):
                words.append(text.format(yaml_value(getattr(c, next(iter(c.__dataclass_fields__))))))
    return ", ".join(words)


def rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, ...]]:
    """One row per key, depth first: nested sections as ``storage.root``, lists of them as ``tasks[].name``,
    mappings of them as ``agents.<name>.config``; each choice of a union gets a row of its own first."""
    out = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        out.append((f"`{prefix}{key}`", type_name(field.annotation), default_of(field), constraints_of(field),
                    (field.description or "").replace("|", "\\|")))
        inner = nested_models(field.annotation)
        origin = typing.get_origin(field.annotation)
        path = f"{prefix}{key}{'[]' if origin is list else '.<name>' if origin is dict else ''}"
        for choice in inner:
            if len(inner) > 1:
                out.append((f"`{path}`", f"mapping: {choice.__name__}", "", "", doc(choice)))
            out += rows(choice, f"{path}.")
    return out


def undocumented(models: list[type[BaseModel]]) -> list[str]:
    return [f"{m.__module__}.{m.__qualname__}.{name}" for m in models
            for name, field in m.model_fields.items() if not field.description]


def doc(model: type[BaseModel]) -> str:
    return " ".join(inspect.cleandoc(model.__doc__ or "").split())


def render() -> str:
    models = config_models()
    lines = ["# Configuration reference", "",
             f"<!-- Generated from the pydantic models in `{PACKAGE}/` by `{COMMAND}`; do not edit by hand. -->", "",
             "Every YAML file an agent reads is validated when it loads: an unknown key or a bad value stops "
             "start-up with the key's path and the reason (`decentralml agent check FILE` validates without "
             "starting). Amounts are in planck (10^-12 UNIT); durations ending in `_s` are seconds; "
             "`expires_in` counts blocks. Examples: `configs/*.yaml`.", ""]
    for root in roots(models):
        lines += [f"## {root.__name__} (`{root.__module__}`)", "", doc(root), ""]
        nested = []
        for field in root.model_fields.values():
            nested += [m for m in nested_models(field.annotation) if doc(m) and m not in nested]
        if nested:
            lines += [f"- `{k}`: {doc(m)}" for k, m in
                      ((next(n for n, f in root.model_fields.items() if m in nested_models(f.annotation)), m)
                       for m in nested)] + [""]
        lines += ["| key | type | default | allowed | effect |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows(root)]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help=f"write {PAGE.relative_to(ROOT)}")
    mode.add_argument("--check", action="store_true", help="exit 1 if the committed page is out of date")
    args = parser.parse_args(argv)
    missing = undocumented(config_models())
    if missing:
        print("fields without description= (add one where the field is defined):\n  " + "\n  ".join(missing),
              file=sys.stderr)
        return 1
    text = render()
    if args.write:
        PAGE.write_text(text)
        print(f"wrote {PAGE.relative_to(ROOT)}")
        return 0
    if not PAGE.exists() or PAGE.read_text() != text:
        print(f"{PAGE.relative_to(ROOT)} is out of date with the config models: run `{COMMAND}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
