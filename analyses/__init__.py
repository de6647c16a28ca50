"""analyses: one module per analysis, each `Config -> run(model, config) -> Result` (docs/results-schema.md).

- `component_ablation`: Study A exp. 1-6 (group, matched random, layer sweep, thirds, perplexity and context
  stress, resilience).
- `representation`: Study A exp. 7 (residual-stream diagnostics per ablated component, CKA, and their rank
  correlation with behaviour).
`registry` runs them into an output directory (resume, force, results.csv); `cli` holds the CLI verbs.
Importing this package loads no model stack: `analyses.schema` is torch-free for `reports/`.
"""

from __future__ import annotations

__all__ = ["ANALYSIS_NAMES"]

ANALYSIS_NAMES = ("component_ablation", "representation")
