"""Small Results written by hand for the tests of mechhybrid.results."""

from __future__ import annotations

MODEL = {"name": "zoo:tiny", "family": "qwen2", "topology": "sequential", "n_params": 10, "n_layers": 2,
         "components": [{"layer": 0, "kind": "attention", "path": "model.layers.0.self_attn"},
                        {"layer": 1, "kind": "mlp", "path": "model.layers.1.mlp"}]}


def row(condition="baseline", metric="ppl", value=1.5, method="none", coords=None, **more) -> dict:
    out = {"condition": condition, "method": method, "metric": metric, "value": value, "ci_low": None,
           "ci_high": None, "n": 4, "seed": 0, "coords": coords or {}}
    out.update(more)
    return out


def result(rows=None, analysis="component_ablation", version=2, model=MODEL, **more) -> dict:
    """A Result JSON object of schema `version` (1: rows without coordinates, no side data)."""
    rows = rows if rows is not None else [row()]
    out = {"schema_version": version, "analysis": analysis, "model": model, "config": {"seed": 0},
           "method": "zero", "data": [{"name": "lm", "version": "v1", "n": 4}], "seed": 0,
           "versions": {"mechhybrid": "0.1.0"}, "rows": rows, "side": [], "extra": {}}
    if version == 1:
        del out["side"]
        out["rows"] = [{k: v for k, v in r.items() if k != "coords"} for r in rows]
    out.update(more)
    return out
