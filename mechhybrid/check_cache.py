"""How far a model's own cached forward drifts from its full forward, layer by layer.

Two continuations are compared with one full no-cache forward over the same tokens, on the residual stream after
every decoder layer and on the logits: `prefill` (read a prefix into the cache, then the rest in one multi-token
call) and `decode` (the rest one token at a time, as `generate` does). `position_ids` are passed as `generate`
passes them. Decode-phase results are only as good as the decode row of this report: on transformers 5.24 with
the tiny test models, jamba's and recurrent_gemma's multi-token continuation drifts (2e-5..6e-2) while their
decode is exact; everything else is exact to <= 2e-6 (see `mechhybrid.state.spec`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch

from mechhybrid import hook_io
from mechhybrid.errors import MechHybridError
from mechhybrid.state import cache as cache_ops
from mechhybrid.state.spec import spec_for, state_components

DEFAULT_TOLERANCE = 1e-4
"""Max |difference| (float32) below which a continuation counts as exact: the tolerance of tests/state."""


@dataclass(frozen=True)
class LayerDrift:
    """One decoder layer's drift: max |cached - full| of the residual stream after it."""

    layer: int
    kinds: tuple[str, ...]
    """Component kinds in the layer."""
    prefill: float
    """After a multi-token continuation of the cache."""
    decode: float
    """After token-by-token continuation."""
    state_prefill: float | None = None
    """Max |state - state of a fresh prefill of every token| after the multi-token continuation (None: the
    layer has no recurrent state). More sensitive than the residual: jamba's multi-token scan restarts from a
    zero state, which random tiny weights hide in the residual (1.9e-5) but not here."""
    state_decode: float | None = None
    """The same after token-by-token continuation."""


@dataclass(frozen=True)
class CacheReport:
    """Per-layer drift of the model's cached prefill and decode from its full forward."""

    model: str
    family: str
    continuation: str
    """What the state map declares exact (`chunk` or `token`), for comparison with the measurement."""
    seq: int
    split: int
    """Tokens read into the cache before continuing."""
    layers: tuple[LayerDrift, ...]
    logits_prefill: float
    logits_decode: float
    tolerance: float = DEFAULT_TOLERANCE

    def __post_init__(self):
        if not 0 < self.split < self.seq:
            raise ValueError(f"split {self.split} must lie inside the {self.seq}-token sequence")
        if [d.layer for d in self.layers] != list(range(len(self.layers))):
            raise ValueError("one LayerDrift per layer, in order")

    @property
    def prefill_exact(self) -> bool:
        states = [d.state_prefill for d in self.layers if d.state_prefill is not None]
        return max([self.logits_prefill] + states) <= self.tolerance

    @property
    def decode_exact(self) -> bool:
        states = [d.state_decode for d in self.layers if d.state_decode is not None]
        return max([self.logits_decode] + states) <= self.tolerance

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(prefill_exact=self.prefill_exact, decode_exact=self.decode_exact)
        return out

    def format(self) -> str:
        verdict = lambda ok: "exact" if ok else "DRIFTS"
        lines = [
            f"{self.model} ({self.family}): {self.seq} tokens, cache filled with {self.split}, tolerance "
            f"{self.tolerance:g}; state map says `{self.continuation}`",
            f"{'layer':>5}  {'kinds':<28}  {'prefill':>9}  {'decode':>9}  {'state(prefill)':>14}  {'state(decode)':>13}",
        ]
        show = lambda v, w: f"{'-':>{w}}" if v is None else f"{v:>{w}.1e}"
        for d in self.layers:
            lines.append(f"{d.layer:>5}  {','.join(d.kinds):<28}  {d.prefill:>9.1e}  {d.decode:>9.1e}  "
                         f"{show(d.state_prefill, 14)}  {show(d.state_decode, 13)}")
        lines.append(f"{'logits':>5}  {'':<28}  {self.logits_prefill:>9.1e}  {self.logits_decode:>9.1e}")
        lines.append(f"prefill continuation: {verdict(self.prefill_exact)}; decode: {verdict(self.decode_exact)}")
        return "\n".join(lines)


def _forward(hm, ids, kwargs, sink: list) -> torch.Tensor:
    """Logits of one forward, appending `[layer, batch, seq, d_model]` layer outputs to `sink`."""
    outs: list = []
    handles = [
        hm.module(f"{hm.family_spec.layers}.{i}").register_forward_hook(
            lambda m, a, o: outs.append(hook_io.first(o).detach().clone())
        )
        for i in range(hm.n_layers)
    ]
    try:
        with torch.no_grad():
            logits = hm.hf_model(ids, **kwargs).logits
    finally:
        for handle in handles:
            handle.remove()
    sink.append(torch.stack(outs))
    return logits


def _states(hm, input_ids, pieces) -> dict:
    """Layer -> State after running `pieces` ([a, b) token ranges) through a fresh cache."""
    batch, seq = input_ids.shape
    cache = cache_ops.new_cache(hm, batch)
    for a, b in pieces:
        _forward(hm, input_ids[:, a:b], cache_ops.forward_kwargs(hm, cache, a, b, batch), [])
    return {layer: cache_ops.read(hm, cache, layer, seq - 1) for layer in state_components(hm)}


def _state_gap(a, b) -> float:
    gap = (a.conv - b.conv).abs().max().item()
    if a.recurrent is not None:
        gap = max(gap, (a.recurrent.float() - b.recurrent.float()).abs().max().item())
    return gap


def check_cache(hm, input_ids=None, seq: int = 32, split: int | None = None, seed: int = 0,
                tolerance: float = DEFAULT_TOLERANCE) -> CacheReport:
    """Measure the drift of the model's cached prefill and decode from its full forward, per layer."""
    if input_ids is None:
        generator = torch.Generator().manual_seed(seed)
        input_ids = torch.randint(0, hm.vocab_size, (1, seq), generator=generator)
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.shape[1] < 2:
        raise MechHybridError("check_cache needs input_ids [batch, seq] with at least 2 tokens")
    input_ids = input_ids.to(hm.device)
    batch, seq = input_ids.shape
    # A short continuation (4 tokens) is the sensitive one: a scan that ignores the cached state (jamba)
    # has had little time to decay what it lost (1.9e-5 at split 16 of 32, larger at 28).
    split = max(1, seq - 4) if split is None else split
    if not 0 < split < seq:
        raise MechHybridError(f"split must be between 1 and {seq - 1}, got {split}")
    full_h: list = []
    full = _forward(hm, input_ids, {"use_cache": False}, full_h)
    reference = _states(hm, input_ids, [(0, seq)])
    drifts, state_drift = {}, {}
    for mode in ("prefill", "decode"):
        pieces = [(0, split), (split, seq)] if mode == "prefill" else [(0, split)] + [(t, t + 1) for t in range(split, seq)]
        states = _states(hm, input_ids, pieces)
        state_drift[mode] = {layer: _state_gap(states[layer], reference[layer]) for layer in reference}
        cache = cache_ops.new_cache(hm, batch)
        _forward(hm, input_ids[:, :split], cache_ops.forward_kwargs(hm, cache, 0, split, batch), [])
        pieces = [(split, seq)] if mode == "prefill" else [(t, t + 1) for t in range(split, seq)]
        hidden, logits = [], []
        for a, b in pieces:
            logits.append(_forward(hm, input_ids[:, a:b], cache_ops.forward_kwargs(hm, cache, a, b, batch), hidden))
        h = torch.cat(hidden, dim=2)
        per_layer = (h - full_h[0][:, :, split:]).abs().amax(dim=(1, 2, 3))
        drifts[mode] = (per_layer.tolist(), (torch.cat(logits, 1) - full[:, split:]).abs().max().item())
    layers = tuple(
        LayerDrift(i, tuple(dict.fromkeys(c.kind for c in hm.components if c.layer == i)),
                   drifts["prefill"][0][i], drifts["decode"][0][i],
                   state_drift["prefill"].get(i), state_drift["decode"].get(i))
        for i in range(hm.n_layers)
    )
    return CacheReport(
        model=hm.name, family=hm.family, continuation=spec_for(hm).continuation, seq=seq, split=split,
        layers=layers, logits_prefill=drifts["prefill"][1], logits_decode=drifts["decode"][1], tolerance=tolerance,
    )


def add_check_cache_command(subparsers) -> None:
    """Register `mechhybrid check-cache MODEL` on the CLI's sub-parsers."""
    from mechhybrid.load_flags import add_load_flags

    parser = subparsers.add_parser(
        "check-cache", help="per-layer drift of the model's cached prefill and decode from its full forward"
    )
    parser.add_argument("model", help="zoo:NAME, a local checkpoint directory, or a hub id in the local cache")
    parser.add_argument("--seq", type=int, default=32, help="length of the random token sequence")
    parser.add_argument("--split", type=int, default=None, help="tokens read into the cache first (default seq - 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random tokens")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max |drift| counted as exact")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    add_load_flags(parser)
    parser.set_defaults(handler=cmd_check_cache)


def cmd_check_cache(args) -> int:
    """Print the CacheReport (table, or JSON with --json). Exit 0 whatever the drift: it is a diagnostic."""
    from mechhybrid.load_flags import load_from_args

    if args.seq < 2:
        raise MechHybridError("--seq must be at least 2")
    if args.split is not None and not 0 < args.split < args.seq:  # checked before the (slow) load
        raise MechHybridError(f"split must be between 1 and {args.seq - 1}, got {args.split}")
    hm = load_from_args(args)
    report = check_cache(hm, seq=args.seq, split=args.split, seed=args.seed, tolerance=args.tolerance)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0
