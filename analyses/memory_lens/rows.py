"""Per-prompt lens outcomes -> result rows.

Readouts (`read:<probe>`): per (layer, head) and probe, for each readout (direct / model) the fraction of prompts
whose true value token ranks first (`top1:<readout>`), its mean probability (`prob:<readout>`), both with
bootstrap intervals, and its median rank (`rank:<readout>`); over all prompts and split by whether the model
answered right (`answered` = right / wrong). All-head readouts also per context length and per depth.
Edits (`edit:<probe>`): the fraction of prompts whose answer flips to the written value (`flip`) and whose top-1
changes at all (`changed`), per layer and for every layer of its kind at once (no `layer` coordinate); `kind`
says which memory was edited (`linear_attention`: the delta-rule write per key / value probe; `ssm`: the Mamba
rank-1 edit along the question's read vector, probe `query`).
Baseline: the model's own top-1 accuracy on the first value token (`acc`), overall and per length and depth.
"""

from __future__ import annotations

import numpy as np

from ..schema import Row
from ..stats import bootstrap_mean_ci, median
from .measure import ALL

__all__ = ["baseline_rows", "read_rows", "edit_rows"]


def _mean_row(condition, method, metric, values, seed, coords) -> Row:
    mean, lo, hi = bootstrap_mean_ci(np.asarray(values, dtype=float), seed)
    return Row(condition, method, metric, mean, lo, hi, n=len(values), seed=seed, coords=coords)


def _splits(prompts: list[NeedlePrompt], answered: list[bool], by_cell: bool):
    """(extra coords, prompt indices): everything, right, wrong, and with `by_cell` each length and depth."""
    everything = list(range(len(prompts)))
    yield {}, everything
    for label, want in (("right", True), ("wrong", False)):
        idx = [i for i in everything if answered[i] == want]
        if idx:
            yield {"answered": label}, idx
    if by_cell:
        for name in ("context_length", "depth"):
            for value in sorted({p.coords[name] for p in prompts}):
                yield {name: value}, [i for i, p in enumerate(prompts) if p.coords[name] == value]


def baseline_rows(prompts, answered, seed) -> list[Row]:
    rows = []
    for extra, idx in _splits(prompts, answered, by_cell=True):
        if "answered" not in extra:
            rows.append(_mean_row("baseline", "none", "acc", [answered[i] for i in idx], seed, extra))
    return rows


def read_rows(prompts, answered, reads: dict, kinds: dict, seed: int) -> list[Row]:
    rows = []
    for (layer, head, probe, readout), outcomes in sorted(reads.items()):
        base = {"kind": kinds[layer], "layer": layer, "probe": probe}
        if head != ALL:
            base["head"] = head
        method = "none" if readout == "direct" else "patch"
        for extra, idx in _splits(prompts, answered, by_cell=head == ALL):
            coords = {**base, **extra}
            ranks = [outcomes[i][0] for i in idx]
            rows.append(_mean_row(f"read:{probe}", method, f"top1:{readout}", [r == 1 for r in ranks], seed, coords))
            rows.append(_mean_row(f"read:{probe}", method, f"prob:{readout}", [outcomes[i][1] for i in idx], seed,
                                  coords))
            rows.append(Row(f"read:{probe}", method, f"rank:{readout}", median(ranks), n=len(idx), seed=seed,
                            coords=coords))
    return rows


def edit_rows(prompts, answered, edits: dict, seed: int) -> list[Row]:
    rows = []
    for (layer, kind, probe), outcomes in sorted(edits.items()):
        base = {"kind": kind, "probe": probe, **({} if layer == ALL else {"layer": layer})}
        for extra, idx in _splits(prompts, answered, by_cell=False):
            coords = {**base, **extra}
            rows.append(_mean_row(f"edit:{probe}", "patch", "flip", [outcomes[i][0] for i in idx], seed, coords))
            rows.append(_mean_row(f"edit:{probe}", "patch", "changed", [outcomes[i][1] for i in idx], seed, coords))
    return rows
