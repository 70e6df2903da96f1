"""The command line's one JSON writer (:mod:`micropl.cli.output`)."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from micropl.cli.output import jsonable, print_json

CLI_DIR = Path(__file__).resolve().parents[2] / "micropl" / "cli"


@pytest.mark.parametrize(("value", "expected"), [
    (float("nan"), None),
    (float("inf"), None),
    (-math.inf, None),
    (np.float32("nan"), None),
    (np.float64(2.5), 2.5),
    (np.int64(7), 7),
    (np.bool_(True), True),
    (np.array([1.0, np.nan, np.inf]), [1.0, None, None]),
    (np.zeros((2, 0)), [[], []]),
    ((1, (2.0, float("nan"))), [1, [2.0, None]]),
    ({"a": {"b": [np.int32(3)]}, 4: "x"}, {"a": {"b": [3]}, "4": "x"}),
    (Path("runs/a.h5"), "runs/a.h5"),
    (None, None),
])
def test_jsonable_gives_plain_finite_json(value, expected):
    assert jsonable(value) == expected


json_trees = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=20)


@given(json_trees)
def test_print_json_writes_one_strict_json_line(value):
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        print_json(value)
    out = buffer.getvalue()
    assert out.endswith("\n") and out.count("\n") == 1
    json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))


def test_only_the_output_module_writes_json():
    """Every command's --json goes through print_json: no json.dumps elsewhere in cli."""
    offenders = []
    for path in sorted(CLI_DIR.rglob("*.py")):
        if path.name == "output.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr in ("dumps", "dump")
                    and isinstance(node.value, ast.Name) and node.value.id == "json"):
                offenders.append(f"{path.relative_to(CLI_DIR)}:{node.lineno}")
    assert len(list(CLI_DIR.rglob("*.py"))) > 10
    assert offenders == []
