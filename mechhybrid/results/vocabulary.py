"""The one place for the words that the library, the analyses and the reports share.

Component kinds, ablation methods, depth thirds, the schema version, what a Result row may say was done to
the model, the coordinates a row may carry (in the order the tidy CSV gives them columns) and the roles of
model families. Everything else imports these; nothing redefines them.
"""

from __future__ import annotations

__all__ = [
    "SCHEMA_VERSION", "READABLE_VERSIONS", "COMPONENT_KINDS", "MIXER_KINDS", "KIND_LABELS", "ABLATION_METHODS",
    "RESULT_METHODS", "THIRDS", "ROLES", "TRANSFORMER_FAMILIES", "SSM_FAMILIES", "FAMILY_ORDER", "COORDS",
    "COORD_ORDER", "FIXED_COLUMNS", "SIDE_KINDS", "SIDE_VERSION",
]

SCHEMA_VERSION = 2
"""Version of the Result JSON this library writes (docs/results-schema.md)."""
READABLE_VERSIONS = (1, 2)
"""Versions it reads: version 1 is upgraded on read (mechhybrid/results/upgrade.py)."""

COMPONENT_KINDS = ("attention", "ssm", "linear_attention", "recurrent", "conv", "mlp")
"""attention; ssm (Mamba-1/2); linear_attention (Gated DeltaNet and kin); recurrent (RG-LRU); conv (LFM2's
gated short convolution); mlp (dense or MoE)."""
MIXER_KINDS = COMPONENT_KINDS[:-1]
"""The token mixers: every kind but the MLP."""
KIND_LABELS = {"attention": "attention", "ssm": "SSM", "linear_attention": "linear attention",
               "recurrent": "recurrent (RG-LRU)", "conv": "short convolution", "mlp": "MLP"}
"""How a report names each kind."""

ABLATION_METHODS = ("zero", "mean", "resample", "skip")
"""Ablation semantics: output -> 0, -> its mean on held-out text, -> its output on other text, whole layer
-> identity."""
RESULT_METHODS = ABLATION_METHODS + ("none", "mixed", "patch", "attribution", "steer", "mask", "focus",
                                      "keep_heads", "generate")
"""What a row (or a Result, `mixed` when its rows differ) says was done to the model, in general terms:
an ablation method, nothing (`none`: baselines, correlations, comparisons), activation or state patching,
gradient attribution, steering, attention keys hidden (`mask`) or their logits raised (`focus`, Study B's
needle focus), attention heads kept per token (`keep_heads`, head sparsification), or generation under an
intervention."""

THIRDS = ("early", "middle", "late")
"""Thirds of the depth, for positional ablations."""

ROLES = ("hybrid", "transformer", "ssm")
"""A model's role in a comparison, in report order: the hybrid under study, then the controls."""
TRANSFORMER_FAMILIES = ("qwen2", "llama", "gpt2")
"""Families that are Transformer controls."""
SSM_FAMILIES = ("mamba2",)
"""Families that are pure-SSM controls; every other family is a hybrid unless its components say otherwise."""
FAMILY_ORDER = ("qwen3_5", "qwen3_next", "falcon_h1", "jamba", "recurrent_gemma", "zamba2", "nemotron_h", "bamba",
                "granitemoehybrid", "lfm2", "qwen2", "llama", "gpt2", "mamba2")
"""The families of the family table, hybrids first, in the order reports give them colours."""

# name -> (types a value may have, what it is). Declared order = the CSV's column order.
COORDS: dict[str, tuple[tuple[type, ...], str]] = {
    "removal": ((str,), "which ablation: group (every component of a kind), random (its matched control), "
                        "layer (one component), third (a third of the depth), resilience (whole layers)"),
    "layer": ((int,), "decoder layer index (0-based)"),
    "third": ((str,), "third of the depth (THIRDS)"),
    "kind": ((str,), "component kind (COMPONENT_KINDS)"),
    "component": ((str,), "a component's module path"),
    "head": ((int,), "head index inside a mixer"),
    "head_role": ((str,), "a head's role: gather or aggregate (Gather-and-Aggregate heads), both = either's"),
    "position": ((int, str), "token position (an index, or a named one such as 'last')"),
    "phase": ((str,), "when an intervention acted: prefill, decode, generation (the answer's tokens) or all"),
    "context_length": ((int,), "tokens of context"),
    "depth": ((int, float), "where in the context (0 = start, 1 = end)"),
    "k": ((int,), "how many (items retrieved, components kept)"),
    "heads_fraction": ((int, float), "the fraction of a layer's heads kept (k / heads)"),
    "selection": ((str,), "how heads were chosen: entropy (per token), l2 (per token), static (ranked once) or "
                          "random (the control)"),
    "logit": ((int, float), "a pre-softmax attention logit set by hand"),
    "prompt": ((str,), "how the prompt was built, where it differs from the plain one (jrt: just-read-twice)"),
    "scale": ((int, float), "a multiplier (needle focus: the needle's logits = largest logit x scale)"),
    "trial": ((int,), "index of a random draw"),
    "statistic": ((str,), "a summary over the trials of a random draw: median, min or max"),
    "n_removed": ((int,), "whole layers removed"),
    "benchmark": ((str,), "benchmark name"),
    "diagnostic": ((str,), "representation diagnostic name"),
    "other_model": ((str,), "the other model compared with, by its full name"),
    "probe": ((str,), "what a recurrent state was read with: query (the token's own), key or value (the key the "
                      "layer computed at the needle's key / first value token)"),
    "answered": ((str,), "whether the model's own answer was right or wrong on the prompts counted"),
}
COORD_ORDER = tuple(COORDS)
"""Coordinate names in CSV column order; names an analysis adds beyond these follow, sorted."""

FIXED_COLUMNS = ("model", "family", "analysis", "condition", "method", "metric", "value", "ci_low", "ci_high",
                 "n", "seed")
"""The first columns of results.csv, before the coordinates."""

SIDE_KINDS = {"graph": ("json", "graphml"), "array": ("npy",), "table": ("json",)}
"""Kinds of side data and their file extensions (the first is the file the Result lists and read_side reads;
a graph's GraphML copy is for other tools)."""
SIDE_VERSION = 1
"""Version of the side data formats."""
