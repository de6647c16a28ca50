"""Recurrent state as a first-class object: read it, transplant it, edit it, exactly, through the model's cache.

`read_state(hm, ids, layers, positions)` returns `State`s; `ReadState` / `PatchState` / `EditState` compose with the
foundation interventions in `run_with_state` and `logits_many_with_state` (and in `mechhybrid.generation.generate`).
"""

from mechhybrid.state.api import (
    StateRunResult, logits_many_with_state, read_state, run_sets, run_with_state,
)
from mechhybrid.state.runner import split_interventions
from mechhybrid.state.spec import FAMILY_STATE, STATE_KINDS, STATE_SPECS, Layout, StateSpec, resolve_layers, state_components
from mechhybrid.state.types import (
    EditState, PatchState, ReadState, State, add_to_state, is_state_intervention, project_out, scale_state,
    write_association, zero_state,
)

__all__ = [
    "EditState", "FAMILY_STATE", "add_to_state", "project_out", "Layout", "PatchState", "ReadState", "STATE_KINDS", "STATE_SPECS", "State",
    "StateRunResult", "StateSpec", "is_state_intervention", "logits_many_with_state", "read_state",
    "resolve_layers", "run_sets", "run_with_state", "scale_state", "split_interventions", "state_components",
    "write_association", "zero_state",
]
