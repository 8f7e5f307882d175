"""The package's floors point one way: `envs` (the worlds) imports nothing from `agent` (the
learners and the run machinery), and neither imports the `train.py` script or `benchmarks`.
Read from the source with `ast`, so an import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_packages(path: Path) -> set[str]:
    """The top-level names of everything `path` imports (absolute imports; relative ones stay
    inside their package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"), [("envs", {"agent", "train", "benchmarks"}), ("agent", {"train", "benchmarks"})]
)
def test_no_import_points_up_a_floor(package, forbidden):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    wrong = {str(f.relative_to(ROOT)): sorted(imported_packages(f) & forbidden) for f in files}
    assert not {f: names for f, names in wrong.items() if names}


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from agent.learning.gumbel import softmax\n    import train\n")
    assert imported_packages(source) == {"agent", "train"}
