"""Every public gradtx name is documented in docs/api, and the docs name no ghosts."""

import pathlib
import re
import types

import pytest

import gradtx

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _module(path: str):
    """`gradtx.<path>` for a dotted path, or None."""
    module = gradtx
    for part in path.split("."):
        module = getattr(module, part, None)
    return module


# Public submodules whose `__all__` names are documented as `module.name` (those
# that exist: the drop-in namespaces land one by one).
SUBMODULES = tuple(
    m
    for m in (
        "tree",
        "flat",
        "projections",
        "torch",
        "losses",
        "tree_utils",
        "transforms",
        "second_order",
        "perturbations",
        "assignment",
        "microbatching",
        "experimental.aggregating",
    )
    if hasattr(_module(m), "__all__")
)
API_TEXT = "\n".join(
    p.read_text() for p in sorted((ROOT / "docs" / "api").glob("*.md"))
)


def _public_names():
    names = []
    for name in dir(gradtx):
        if name.startswith("_") or isinstance(getattr(gradtx, name), types.ModuleType):
            continue
        names.append(name)
    for module in SUBMODULES:
        names += [f"{module}.{n}" for n in _module(module).__all__]
    return names


@pytest.mark.parametrize("name", _public_names())
def test_docs_every_public_name_is_in_the_api_pages(name):
    pattern = re.compile(r"`" + re.escape(name) + r"[`(]")
    assert pattern.search(API_TEXT), f"gradtx.{name} is not documented in docs/api/*.md"


def test_docs_api_pages_name_only_existing_functions():
    prefixes = "|".join(re.escape(m) for m in SUBMODULES)
    pattern = rf"^\| `((?:{prefixes})\.)?([a-z_][a-z0-9_]*)\("
    documented = set(re.findall(pattern, API_TEXT, re.M))
    missing = sorted(
        f"{prefix}{name}"
        for prefix, name in documented
        if not hasattr(_module(prefix[:-1]) if prefix else gradtx, name)
    )
    assert not missing, f"docs/api names functions gradtx does not have: {missing}"


def test_docs_readme_has_the_test_command_ci_runs():
    readme = (ROOT / "README.md").read_text()
    marker = readme.index("<!-- test-command -->")
    block = readme[marker:].split("```")[1]
    assert "pytest" in block
