"""The house rules that code review would otherwise have to catch: no import circle, `model/`
independent of `pipeline/`, modules small enough to read, each saying what it owns."""
from __future__ import annotations

import ast

import pytest

from pipeline import sources

MAX_LINES = 500


def test_no_import_circle():
    # the same check as `python -m pipeline.sources`
    assert sources.cycles() == []


def test_the_models_import_nothing_of_the_pipeline():
    models = [m for m in sources.all_modules() if m.split(".")[0] == "model"]
    assert models
    for module in models:
        assert not [m for m in sources.closure(module) if m.startswith("pipeline")], module


@pytest.mark.parametrize("module", sources.all_modules())
def test_every_module_is_small_and_says_what_it_owns(module):
    path = sources.module_file(module)
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{path}: {len(text.splitlines())} lines"
    assert ast.get_docstring(ast.parse(text)), f"{path}: no module docstring"


def test_the_import_graph_reads_lazy_imports_and_skips_type_only_ones():
    # config checks a country code with the CodeCarbon adapter, which names the config's types
    # only for type checkers: a real edge one way, none back
    assert "pipeline.energy.codecarbon_adapter" in sources.imports("pipeline.config.checks")
    assert "pipeline.config.schema" not in sources.imports("pipeline.energy.codecarbon_adapter")
    # a function-level import counts (the inference core imports the Wiener filter lazily)
    assert "model.wiener" in sources.imports("pipeline.inference.separate")
