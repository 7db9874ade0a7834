# SPDX-License-Identifier: Apache-2.0
"""The usage snippets of docs/api/contrib_structured.md run and do what they say."""

from __future__ import annotations

import pathlib
import re

import pytest

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs/api/contrib_structured.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)


def test_page_has_the_sam_and_schedule_free_snippets():
    assert len(SNIPPETS) == 2
    assert "gradtx.sam(" in SNIPPETS[0]
    assert "schedule_free_eval_params" in SNIPPETS[1]


@pytest.mark.parametrize("code", SNIPPETS, ids=["sam", "schedule_free"])
def test_snippet_runs_and_reduces_the_loss(code, capsys):
    scope: dict = {}
    exec(compile(code, str(PAGE), "exec"), scope)
    start = float(scope["loss"]({"w": scope["jnp"].zeros(3)}))
    assert float(scope["loss"](scope["params"])) < 0.5 * start
    if "eval_params" in scope:
        assert float(capsys.readouterr().out) < 0.5 * start
