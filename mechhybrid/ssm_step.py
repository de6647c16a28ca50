"""Mamba-2's one-token step clamps dt to the mixer's `time_step_limit`, as its whole-sequence scan does.

transformers (5.24) runs a Mamba-2 mixer (the families in STEP_MIXERS) in one of two ways. Over a sequence,
`mamba2_chunk_scan` takes dt = clamp(softplus(dt + dt_bias), *time_step_limit). For one token continuing a cached
state (every decode step, and each one-token segment of mechhybrid's state runner) the mixer calls
`mamba2_selective_state_update` instead, which takes no limit (nor does mamba_ssm's kernel of that name). Once the
limit binds, a state carried on token by token leaves the one the whole forward computes, silently: on the second
tiny mamba2 shape (time_step_limit (0, 0.1)), reading the state after each of 10 tokens, states were off by up to
0.12 and logits by 0.08 (1.6e-6 and 2.7e-6 with the clamp). zamba2 and nemotron_h always limit dt from below, at
`time_step_min` (1e-3 by default).

`clamp_one_token_steps(model, family)` (which `mechhybrid.load` calls) makes the step clamp without editing or
copying any of transformers' code:

- each Mamba-2 mixer of the model gets a forward pre-hook and hook that publish its own `time_step_limit` (the
  value its chunk scan is given) while its forward runs. Torch hooks, so they run whatever wraps `forward`
  (accelerate's device-map hooks, nnsight);
- the family's modeling module calls a wrapper in place of `mamba2_selective_state_update`: under a limit that
  can bind it adds the bias, applies softplus and clamps, in the chunk scan's order, then runs transformers' own
  update on the final dt (bias None, softplus off), so the update itself is untouched.

Where no limit can bind (none published, or lower <= 0 and upper infinite: the default of mamba2, falcon_h1, bamba
and granitemoehybrid) the wrapper passes its arguments through untouched, so results are bitwise as before; where
a limit binds on no element of a step, the clamp returns its input and the step is again bitwise transformers'.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import math
import weakref

__all__ = ["STEP_MIXERS", "clamp_one_token_steps", "release_one_token_steps"]

STEP_MIXERS = {
    "mamba2": ("transformers.models.mamba2.modeling_mamba2", "Mamba2Mixer"),
    "falcon_h1": ("transformers.models.falcon_h1.modeling_falcon_h1", "FalconH1Mixer"),
    "bamba": ("transformers.models.bamba.modeling_bamba", "BambaMixer"),
    "granitemoehybrid": ("transformers.models.granitemoehybrid.modeling_granitemoehybrid",
                         "GraniteMoeHybridMambaLayer"),
    "zamba2": ("transformers.models.zamba2.modeling_zamba2", "Zamba2MambaMixer"),
    "nemotron_h": ("transformers.models.nemotron_h.modeling_nemotron_h", "NemotronHMamba2Mixer"),
}
"""Family -> (transformers module, its Mamba-2 mixer class): mixers whose one-token step ignores the dt limit."""

STEP_FUNCTION = "mamba2_selective_state_update"
"""The name each module in STEP_MIXERS calls for a one-token step (looked up in the module at every call)."""

_limit: contextvars.ContextVar = contextvars.ContextVar("mechhybrid_time_step_limit", default=None)
"""The `time_step_limit` of the hooked mixer whose forward is running; None outside one."""
_hooked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Hooked mixer -> the handles of its two hooks (weak: a model that is dropped takes its entries with it)."""


def _can_bind(limit) -> bool:
    """Whether clamping to `limit` can change a softplus output (which is never negative)."""
    return limit is not None and (limit[0] > 0 or limit[1] < math.inf)


def _clamped(update):
    """transformers' one-token update, with dt clamped as the chunk scan clamps it under a published limit.

    Called as transformers' mixers call it: the first seven arguments by position, `dt_bias` and `dt_softplus`
    by keyword. Axis names: dt [batch, head, head_dim] (one value per head, expanded over head_dim)."""
    import torch
    import torch.nn.functional as F

    @functools.wraps(update)
    def step(state, hidden_states, dt, *args, dt_bias=None, dt_softplus=False, **kwargs):
        limit = _limit.get()
        if not _can_bind(limit):
            return update(state, hidden_states, dt, *args, dt_bias=dt_bias, dt_softplus=dt_softplus, **kwargs)
        # The chunk scan's order and operations (transformers' mamba2_chunk_scan): bias, softplus, clamp.
        if dt_bias is not None:
            dt = dt + dt_bias.to(dt.dtype)
        if dt_softplus:
            dt = F.softplus(dt)
        dt = torch.clamp(dt, min=limit[0], max=limit[1])
        return update(state, hidden_states, dt, *args, dt_bias=None, dt_softplus=False, **kwargs)

    step.mechhybrid_clamps_dt = True
    return step


def _hook(mixer) -> None:
    """Publish `mixer.time_step_limit` for the duration of each of its forwards."""
    tokens = []

    def enter(module, args):
        tokens.append(_limit.set(module.time_step_limit))

    def leave(module, args, output):
        _limit.reset(tokens.pop())

    # First of the pre-hooks and always called, so that every `enter` is paired with a `leave`, even when a later
    # pre-hook or the forward raises.
    _hooked[mixer] = (mixer.register_forward_pre_hook(enter, prepend=True),
                      mixer.register_forward_hook(leave, always_call=True))


def _module_and_mixer(family: str):
    """`family`'s transformers modeling module and its Mamba-2 mixer class."""
    module_path, class_name = STEP_MIXERS[family]
    module = importlib.import_module(module_path)
    return module, getattr(module, class_name)


def clamp_one_token_steps(hf_model, family: str) -> bool:
    """Make `hf_model`'s Mamba-2 mixers clamp dt in their one-token step as in their chunk scan (idempotent).

    Returns False (and changes nothing) where `family` has no Mamba-2 mixer."""
    if family not in STEP_MIXERS:
        return False
    module, mixer_class = _module_and_mixer(family)
    if not hasattr(getattr(module, STEP_FUNCTION), "mechhybrid_clamps_dt"):  # not already ours
        setattr(module, STEP_FUNCTION, _clamped(getattr(module, STEP_FUNCTION)))
    for mixer in hf_model.modules():
        if isinstance(mixer, mixer_class) and mixer not in _hooked:
            _hook(mixer)
    return True


def release_one_token_steps(hf_model, family: str) -> None:
    """Undo `clamp_one_token_steps`: `hf_model`'s mixers step as transformers' own again; once no mixer of
    `family` is hooked any more, its module calls transformers' update again."""
    if family not in STEP_MIXERS:
        return
    for mixer in hf_model.modules():
        for handle in _hooked.pop(mixer, ()):
            handle.remove()
    module, mixer_class = _module_and_mixer(family)
    step = getattr(module, STEP_FUNCTION)
    if hasattr(step, "mechhybrid_clamps_dt") and not any(isinstance(m, mixer_class) for m in list(_hooked)):
        setattr(module, STEP_FUNCTION, step.__wrapped__)
