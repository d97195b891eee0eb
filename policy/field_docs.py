"""The attribute docstrings of the model's fields, which Python does not keep at runtime.

``policy/model.py`` documents each field with a string right below it (the convention Sphinx and msgspec's
own docs read). The JSON Schema export and the field table in docs/policy.md both want those words, so this
reads them from the model's source with ``ast``. Used only by the doc/schema generators, never per connection.
"""

from __future__ import annotations

import ast
import functools
import inspect
import sys


def prose(doc: str) -> str:
    """A docstring as one line of Markdown-ish text: whitespace collapsed, ``code`` as `code`."""
    return " ".join(doc.split()).replace("``", "`")


def field_docs(cls: type) -> dict[str, str]:
    """``{field name: docstring}`` for the fields of class ``cls`` that have one."""
    return _module_docs(cls.__module__).get(cls.__qualname__, {})


@functools.cache
def _module_docs(module_name: str) -> dict[str, dict[str, str]]:
    tree = ast.parse(inspect.getsource(sys.modules[module_name]))
    docs: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            docs[node.name] = _class_field_docs(node)
    return docs


def _class_field_docs(node: ast.ClassDef) -> dict[str, str]:
    docs: dict[str, str] = {}
    for statement, following in zip(node.body, node.body[1:], strict=False):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs
