"""analyses: one package per analysis, each `Config -> run(model, config) -> Result` (docs/results-schema.md),
declared by its `SPEC` (analyses/spec.py).

- `component_ablation`: Study A exp. 1-6 (group, matched random, layer sweep, thirds, perplexity and context
  stress, resilience).
- `representation`: Study A exp. 7 (residual-stream diagnostics per ablated component, CKA, and their rank
  correlation with behaviour).
`studies` is the study definition (which analyses `mechhybrid study` runs, at which sizes); `registry` runs one
into an output directory (resume, force, results.csv), `study` runs the study over many models; `cli` holds
the CLI verbs. Importing this package loads no model stack: `analyses.schema` is torch-free for `reports/`.
"""
