"""The package's boundaries: it imports without torch, reports import nothing else of mechhybrid, and the shared
vocabulary is defined once."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

from mechhybrid.results import vocabulary as V

REPO = Path(__file__).resolve().parents[2]


def test_imports_writes_and_reads_with_torch_absent(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        for name in ("torch", "transformers", "nnsight"):
            sys.modules[name] = None  # any import of them fails
        import networkx as nx
        import numpy as np
        from mechhybrid.results import Result, Row, read_result, read_side, write_result, write_results_csv
        res = Result(analysis="a", model={{"name": "m", "family": "f", "topology": "sequential", "n_params": 1,
                     "n_layers": 1, "components": []}}, config={{}}, method="none", data=[], seed=0, versions={{}},
                     rows=[Row("c", "none", "v", 1.0, coords={{"layer": 0}})])
        res.attach("g", nx.path_graph(3))
        res.attach("x", np.ones(2))
        back = read_result(write_result(res, {str(tmp_path)!r}))
        assert read_side(back, "g", {str(tmp_path)!r}).number_of_edges() == 2
        write_results_csv({str(tmp_path)!r})
        import reports.load, reports.tables
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
    assert (tmp_path / "results.csv").read_text().splitlines()[0].endswith(",seed,layer")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.append(node.module)
    return found


def test_reports_import_only_errors_and_results_from_mechhybrid():
    allowed = ("mechhybrid.errors", "mechhybrid.results")
    for path in sorted((REPO / "reports").rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top != "analyses", (path.name, name)
            if top == "mechhybrid":
                assert name.startswith(allowed), (path.name, name)


def test_the_package_imports_nothing_heavier_than_numpy_and_networkx():
    for path in sorted((REPO / "mechhybrid" / "results").glob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in ("torch", "transformers", "nnsight", "analyses", "reports"), (path.name, name)
            if top == "mechhybrid":
                assert name.startswith(("mechhybrid.errors", "mechhybrid.results")), (path.name, name)


def test_the_vocabulary_is_defined_once():
    import analyses.options
    import analyses.scoring
    import mechhybrid.components
    import mechhybrid.families
    import mechhybrid.interventions
    import reports.palette
    import reports.tables

    assert mechhybrid.families.KINDS is V.COMPONENT_KINDS and V.MIXER_KINDS == V.COMPONENT_KINDS[:-1]
    assert analyses.options.ALL_KINDS is V.COMPONENT_KINDS and analyses.options.MIXER_KINDS is V.MIXER_KINDS
    assert mechhybrid.interventions.METHODS is V.ABLATION_METHODS is analyses.options.SEMANTICS
    assert analyses.scoring.ABLATION_METHODS is V.ABLATION_METHODS
    assert mechhybrid.components.THIRDS is V.THIRDS is reports.tables.THIRDS
    assert reports.tables.KIND_LABELS is V.KIND_LABELS and set(V.KIND_LABELS) == set(V.COMPONENT_KINDS)
    assert reports.palette.ROLE_ORDER is V.ROLES
    # The reports' family lists cover exactly the family table, controls included.
    assert set(V.FAMILY_ORDER) == set(mechhybrid.families.FAMILY_NAMES)
    assert set(V.TRANSFORMER_FAMILIES) | set(V.SSM_FAMILIES) <= set(V.FAMILY_ORDER)
    # No other module spells a copy of them out.
    copies = ('"zero", "mean", "resample", "skip"', '"early", "middle", "late"', '"attention", "ssm", "linear_')
    for package in ("mechhybrid", "analyses", "reports"):
        for path in sorted((REPO / package).rglob("*.py")):
            if path.name != "vocabulary.py":
                text = path.read_text(encoding="utf-8")
                assert not [c for c in copies if c in text], path
