"""memory_lens: what the Gated DeltaNet / Mamba memory holds about the needle at the question token, and whether
the model reads it (docs/memory_lens.md).

The zoo's needle grid (analyses/retrieval/prompts.py) in batches of equal length; each batch is one lens run
(mechhybrid.lens): the prompt once, then every readout through the rest of the model and every edit as 1-token
continuations of its cache.
"""

from __future__ import annotations

import time

from mechhybrid.errors import MechHybridError
from mechhybrid.lens import lens_components

from ..common import config_dict, library_versions, model_info
from ..data import speaks_zoo
from ..retrieval.prompts import zoo_grid
from ..schema import DataInfo, Result
from .config import MemoryLensConfig
from .measure import measure
from .rows import baseline_rows, edit_rows, read_rows

__all__ = ["ANALYSIS", "run", "count", "applies", "NOTES"]

ANALYSIS = "memory_lens"
NOTES = (
    "RG-LRU (recurrent_gemma) layers are left out: their state is gated elementwise and has no key/query readout.",
    "Mamba readouts exclude the D skip (D x_t carries the question token itself, not the memory); GDN has none.",
    "Key readouts read the state with the needle's key scaled as the layer scales its query (GDN: / sqrt(d_k)).",
    "model readouts replace the layer's output at the question token (one head swapped into its own pre-norm "
    "output, or every head) and run the rest of the model on the unchanged prefix.",
    "Edits: S <- S + beta k (v' - S^T k)^T on every head of a GDN memory right before the question token, k the "
    "layer's unit key at the probe's position, v' the value vector it computes at the first value token of the "
    "same prompt with another value.",
    "Mamba edits (Mamba-2, Mamba-1; probe query): per head (Mamba-1: per channel) h <- h + (y' - h c) c^T / "
    "(c^T c) on the state right before the question token, c the question token's C times its decay exp(dt A) "
    "(what it reads that state with), y' what the question token reads from that state in the same prompt with "
    "another value; the question token's own write and D skip are left as they are.",
)


def _lens_layers(hm) -> dict:
    return lens_components(hm)


def applies(hm, cfg: MemoryLensConfig) -> str | None:
    """Why the lens cannot run on `hm`: no Gated DeltaNet / Mamba layer, or not the zoo's language."""
    try:
        _lens_layers(hm)
    except MechHybridError as exc:
        return str(exc)
    if not speaks_zoo(hm):
        return "it does not speak the zoo's language (the lens reads the zoo's needle prompts)"
    return None


def _batches(prompts) -> list[list]:
    by_length: dict = {}
    for p in prompts:
        by_length.setdefault(len(p.ids), []).append(p)
    return [by_length[n] for n in sorted(by_length)]


def count(hm, config: MemoryLensConfig | None = None) -> int:
    """Progress steps of `run`: one per context length (a batch of equally long prompts)."""
    cfg = config if config is not None else MemoryLensConfig()
    return len(_batches(zoo_grid(cfg.lengths, cfg.depths, cfg.per_cell, cfg.seed)))


def run(hm, config: MemoryLensConfig | None = None, *, checkpoints=None, progress=None) -> Result:
    """The lens over the zoo's needle grid: readouts per layer, head and probe; edits on GDN memories and Mamba
    states."""
    cfg = config if config is not None else MemoryLensConfig()
    why = applies(hm, cfg)
    if why:
        raise MechHybridError(f"{ANALYSIS} does not apply to model {hm.name}: {why}")
    layers = _lens_layers(hm)
    prompts, answered, reads, edits = [], [], {}, {}
    start = time.process_time()
    for group in _batches(zoo_grid(cfg.lengths, cfg.depths, cfg.per_cell, cfg.seed)):
        batch = measure(hm, group, cfg.probes, cfg.through_model, cfg.edit, cfg.beta, cfg.seed)
        prompts += group
        answered += batch.answered
        for store, new in ((reads, batch.reads), (edits, batch.edits)):
            for key, values in new.items():
                store.setdefault(key, []).extend(values)
        if progress is not None:
            progress.update(1)
    kinds = {layer: c.kind for layer, c in layers.items()}
    rows = (baseline_rows(prompts, answered, cfg.seed) + read_rows(prompts, answered, reads, kinds, cfg.seed)
            + edit_rows(prompts, answered, edits, cfg.seed))
    extra = {"notes": list(NOTES), "layers": {str(k): v for k, v in sorted(kinds.items())},
             "cpu_s": round(time.process_time() - start, 2), "right": int(sum(answered)),
             "wrong": int(len(answered) - sum(answered))}
    return Result(analysis=ANALYSIS, model=model_info(hm), config=config_dict(cfg), method="mixed",
                  data=[DataInfo("zoo-needle-grid", f"seed {cfg.seed}", len(prompts))], seed=cfg.seed,
                  versions=library_versions(), rows=rows, extra=extra)
