"""State patches where the cache continues exactly only one token at a time (jamba, recurrent_gemma).

Each patched run goes through `mechhybrid.state`'s segmented runner (`logits_many_with_state`): the prompt runs
up to the patched position, the state is written, and the rest continues one token at a time, which is exact
there (`mechhybrid.state.spec`). Runs of one prompt are stacked; prompts run one by one, since the runner takes
unpadded rows.
"""

from __future__ import annotations

from collections import defaultdict

import torch

from mechhybrid.state.api import logits_many_with_state
from mechhybrid.state.types import PatchState


def run_state_units(hm, runs, units, collector, max_rows) -> int:
    """Run units whose writes are all states; put their reads into `collector`; returns layer-token-rows."""
    by_row = defaultdict(list)
    for unit in units:
        by_row[(unit.track, unit.row)].append(unit)
    work = 0
    for (k, b), group in by_row.items():
        run = runs[k]
        ids = run.base_ids[b: b + 1, : run.lengths[b]]
        want = run.read_positions(torch.tensor([b]))[0]
        sets = [[PatchState([layer], p, state={layer: state}) for layer, p, state in u.states] for u in group]
        reads = logits_many_with_state(hm, ids, sets, reduce=lambda logits: logits[:, want], max_rows=max_rows)
        for unit, read in zip(group, reads):
            collector.put(unit, read[0].float())
        work += len(group) * ids.shape[1] * hm.n_layers
    return work
