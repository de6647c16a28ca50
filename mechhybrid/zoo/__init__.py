"""The zoo: tiny hybrids trained by the project on a synthetic language with known structure.

Importing this package is cheap (no torch): the heavy modules load on use.

- `language`: the seeded, versioned synthetic language (LANGUAGE_VERSION).
- `tokenizer`: the word-level HF tokenizer of that language.
- `benchmarks`: held-out, versioned splits (lm, facts, needle, recall) and `score_items(bench, logits_fn)`.
- `recipes`: the one training recipe (with its stopping rule) and a tiny config per family (ZOO_SPECS).
- `probe`, `curves`: the training probe (its own random stream) and its curve: stopping rule, steps to retrieval.
- `train`, `card`: resumable training in a run directory, evaluation and model cards.
- `registry`: `zoo_names()`, `zoo_dir(name)`, `load_card(name)` for `load("zoo:NAME")`.
- `cli`: `add_zoo_commands(subparsers)`.
"""

from mechhybrid.zoo.registry import ZOO_ROOT, load_card, zoo_dir, zoo_names

__all__ = ["ZOO_ROOT", "load_card", "zoo_dir", "zoo_names"]
