"""HybridModel: a transformers causal LM wrapped with nnsight, with its component map and the intervention API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from nnsight import NNsight

from mechhybrid.attention.interface import installed
from mechhybrid.components import Component, ComponentMap, build_components
from mechhybrid.engine import Plan, _Op, capture_sources, compile_plan, visit_points
from mechhybrid.errors import MechHybridError
from mechhybrid.families import Family
from mechhybrid.inputs import check_input_ids

# Rows of [seq x vocab] float32 logits one stacked forward may hold before logits_many splits the sets
# into several forwards: 1 GiB keeps a 2,048-token x 32k-vocab batch of 4 in one piece.
DEFAULT_LOGITS_BUDGET_BYTES = 1 << 30


@dataclass
class RunResult:
    """What one forward with interventions returns."""

    logits: torch.Tensor
    """`[batch, seq, vocab]` logits after the interventions."""
    captures: dict[Component, torch.Tensor]
    """Captured component outputs `[batch, seq, d_model]` (or per-head `[batch, seq, head, d_model]`)."""
    attention: dict = field(default_factory=dict)
    """Layer -> `AttentionPattern` recorded by `CaptureAttention` (`mechhybrid.attention`)."""


def _resolve(root, dotted: str):
    for part in dotted.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


def _execution_order(hf_model) -> dict[tuple[str, str], int]:
    """(module path, "in"/"out") -> order of first occurrence in a 2-token forward (for nnsight's ordering)."""
    order: dict[tuple[str, str], int] = {}
    handles = []

    def note(key):
        if key not in order:
            order[key] = len(order)

    for name, module in hf_model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda m, a, name=name: note((name, "in"))))
        handles.append(module.register_forward_hook(lambda m, a, o, name=name: note((name, "out"))))
    device = next(hf_model.parameters()).device
    try:
        with torch.no_grad():
            hf_model(torch.zeros(1, 2, dtype=torch.long, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return order


class HybridModel:
    """A loaded model: `hf_model` (transformers), `nn` (nnsight), `components`, and the intervention API."""

    def __init__(self, hf_model, tokenizer, family: Family, name: str = "model"):
        self.hf_model = hf_model.eval()
        self.tokenizer = tokenizer
        self.family_spec = family
        self.family = family.name
        self.name = name
        self.load_options: dict = {}
        """The keyword options of `mechhybrid.load` that produced this model (dtype, safety flags)."""
        self.nn = NNsight(self.hf_model)
        self._layers = _resolve(self.hf_model, family.layers)
        self.n_layers = len(self._layers)
        self._order = _execution_order(self.hf_model)
        # Forward order is the order in which the modules actually run (zamba2's shared transformer runs
        # before its Mamba decoder; falcon_h1's Mamba-2 before its attention), not the table's slot order.
        found = build_components(self.hf_model, family)
        found.sort(key=lambda c: self._order.get((c.path, "in"), len(self._order)))
        self.components = ComponentMap(found, self.n_layers)
        self._envoys: dict[str, object] = {}

    # -- identity -----------------------------------------------------------------------------------------
    @property
    def topology(self) -> str:
        return self.family_spec.topology

    @property
    def config(self):
        return self.hf_model.config

    @property
    def d_model(self) -> int:
        return int(self.hf_model.get_input_embeddings().weight.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.hf_model.get_output_embeddings().weight.shape[0])

    @property
    def device(self) -> torch.device:
        return next(self.hf_model.parameters()).device

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.hf_model.parameters())

    def __repr__(self) -> str:
        return f"HybridModel({self.name!r}, family={self.family}, {self.n_layers} layers, {len(self.components)} components)"

    # -- paths and envoys ---------------------------------------------------------------------------------
    def module(self, path: str):
        """The transformers sub-module at a dotted path."""
        return _resolve(self.hf_model, path)

    def envoy_at(self, path: str):
        """The nnsight Envoy of the sub-module at a dotted path."""
        if path not in self._envoys:
            self._envoys[path] = _resolve(self.nn, path)
        return self._envoys[path]

    def envoy(self, component: Component):
        """The component's nnsight Envoy, for users who write their own traces."""
        return self.envoy_at(component.path)

    def execution_index(self, point: tuple[str, str]) -> int:
        if point not in self._order:
            raise MechHybridError(f"{point[0]} is never called in this model's forward")
        return self._order[point]

    def out_proj_weight(self, component: Component) -> torch.Tensor:
        """The output projection as `[d_model, head * head_dim]` (GPT-2's Conv1D stores it transposed)."""
        module = self.module(component.out_proj)
        weight = module.weight
        return weight.T if type(module).__name__ == "Conv1D" else weight

    # -- forwards -------------------------------------------------------------------------------------------
    def _check_ids(self, input_ids) -> torch.Tensor:
        return check_input_ids(self, input_ids)

    def _forward(self, input_ids, plan: Plan, hidden: bool = False):
        """One traced forward of the stacked sets; returns (logits, hidden states or None), in the caller's layout.

        A padded batch (`plan.layout`) runs right-padded and unmasked, which is exact at every real token in
        every family (`mechhybrid.inputs`)."""
        n_sets = len(plan.captures)
        stacked = input_ids.repeat(n_sets, 1)
        if plan.layout is not None:
            stacked = plan.layout.to_internal(stacked)
        ops = plan.ops
        layer_outs: list[torch.Tensor] = []
        if hidden:
            ops = dict(ops)
            for index in range(self.n_layers):
                point = (f"{self.family_spec.layers}.{index}", "out")
                ops[point] = list(ops.get(point, [])) + [_record_into(layer_outs)]
        stash: dict = {}
        with installed(self, plan.attention), torch.no_grad(), self.nn.trace(stacked.to(self.device)):
            visit_points(self, ops, stash)
            logits = self.nn.output.logits.save()
        if plan.layout is not None:
            logits = plan.layout.to_given(logits)
            layer_outs = [plan.layout.to_given(h) for h in layer_outs]
        return logits, (torch.stack(layer_outs) if hidden else None)

    def _plan(self, input_ids, intervention_sets, attention_mask) -> Plan:
        plan = compile_plan(self, input_ids, [list(s) for s in intervention_sets], "prefill", attention_mask)
        capture_sources(self, plan)
        return plan

    def run(self, input_ids, interventions: Sequence = (), attention_mask=None) -> RunResult:
        """One forward with interventions: logits and captures (and, with ReadState, the states read).

        `attention_mask` (1 = real token) may pad rows on the left or on the right: each row then gets what it
        gets alone at its real tokens (outputs at padding positions are unspecified); positions index the batch
        as given."""
        input_ids = self._check_ids(input_ids)
        if _has_state(interventions):
            from mechhybrid.state import run_with_state

            return run_with_state(self, input_ids, interventions, attention_mask)
        plan = self._plan(input_ids, [interventions], attention_mask)
        logits, _ = self._forward(input_ids, plan)
        patterns = {} if plan.attention is None else plan.attention.patterns.get(0, {})
        return RunResult(logits=logits, captures=plan.captures[0], attention=patterns)

    def attention_patterns(
        self, input_ids, layers=None, positions=(-1,), heads=None, interventions: Sequence = (), attention_mask=None,
    ) -> dict:
        """Layer -> `AttentionPattern` (`[batch, head, query, key]` probabilities and logits) at the chosen layers
        (None: every attention layer), query positions (default: the last) and heads, under `interventions`."""
        from mechhybrid.attention import CaptureAttention

        capture = CaptureAttention(layers=layers, positions=positions, heads=heads)
        return self.run(input_ids, [*interventions, capture], attention_mask).attention

    def logits(self, input_ids, interventions: Sequence = (), attention_mask=None) -> torch.Tensor:
        """`[batch, seq, vocab]` logits with the interventions applied."""
        return self.run(input_ids, interventions, attention_mask).logits

    def hidden_states(self, input_ids, interventions: Sequence = (), attention_mask=None) -> torch.Tensor:
        """`[layer, batch, seq, d_model]`: the residual stream after each decoder layer (before the final norm)."""
        return self.hidden_states_many(input_ids, [interventions], attention_mask)[0]

    def hidden_states_many(self, input_ids, intervention_sets: Sequence[Sequence], attention_mask=None) -> torch.Tensor:
        """`[set, layer, batch, seq, d_model]`: `hidden_states` under each intervention set, in one stacked forward."""
        input_ids = self._check_ids(input_ids)
        if not intervention_sets:
            raise MechHybridError("hidden_states_many needs at least one intervention set")
        if any(_has_state(s) for s in intervention_sets):
            raise MechHybridError("hidden_states does not take state interventions; use hm.run with Capture")
        plan = self._plan(input_ids, intervention_sets, attention_mask)
        hidden = self._forward(input_ids, plan, hidden=True)[1]  # [layer, set * batch, seq, d_model]
        layers, _, seq, width = hidden.shape
        return hidden.view(layers, len(intervention_sets), input_ids.shape[0], seq, width).transpose(0, 1)

    def logits_many(
        self,
        input_ids,
        intervention_sets: Sequence[Sequence],
        attention_mask=None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        max_rows: int | None = None,
    ) -> torch.Tensor:
        """`[set, batch, seq, vocab]`: each intervention set evaluated as if by `logits`, many per forward.

        Sets are stacked along the batch (one forward over sets x batch rows), chunked so that a forward holds
        at most `max_rows` rows (default: what fits DEFAULT_LOGITS_BUDGET_BYTES of logits). `reduce`, if given,
        maps each set's `[batch, seq, vocab]` logits to something smaller (e.g. per-token loss) before stacking.
        """
        input_ids = self._check_ids(input_ids)
        if not intervention_sets:
            raise MechHybridError("logits_many needs at least one intervention set")
        if any(_has_state(s) for s in intervention_sets):
            from mechhybrid.state import logits_many_with_state

            return logits_many_with_state(self, input_ids, intervention_sets, attention_mask, reduce, max_rows)
        batch, seq = input_ids.shape
        if max_rows is None:
            max_rows = max(batch, DEFAULT_LOGITS_BUDGET_BYTES // (4 * seq * self.vocab_size))
        per_forward = max(1, max_rows // batch)
        results = []
        for start in range(0, len(intervention_sets), per_forward):
            chunk = intervention_sets[start : start + per_forward]
            plan = self._plan(input_ids, chunk, attention_mask)
            logits, _ = self._forward(input_ids, plan)
            for index in range(len(chunk)):
                part = logits[index * batch : (index + 1) * batch]
                results.append(part if reduce is None else reduce(part))
        return torch.stack(results)

    # -- state and generation (mechhybrid.state, mechhybrid.generation) ------------------------------------------
    def read_state(self, input_ids, layers=None, positions=(-1,), interventions: Sequence = ()):
        """(layer, position) -> State right after each position (see `mechhybrid.state.read_state`)."""
        from mechhybrid.state import read_state

        return read_state(self, input_ids, layers, positions, interventions)

    def generate(self, input_ids, interventions: Sequence = (), max_new_tokens: int = 16, phase: str | None = None,
                 **options):
        """Greedy generation through the cache with phase-aware interventions, for prompts of one length or many
        (`mechhybrid.generation.generate`, which documents `options`: attention_mask, generation_phase,
        eos_token_id, stop_strings, keep_logits, pad_token_id)."""
        from mechhybrid.generation import generate

        return generate(self, input_ids, interventions, max_new_tokens=max_new_tokens, phase=phase, **options)

    # -- logit lens -----------------------------------------------------------------------------------------
    def final_norm(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.module(self.family_spec.final_norm)(hidden)

    def unembed(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from already-normed hidden states, with the family's own logit scaling."""
        logits = self.hf_model.get_output_embeddings()(hidden)
        transform = self.family_spec.logits_from_unembed
        return logits if transform is None else transform(self.config, logits)

    def logit_lens(self, hidden: torch.Tensor) -> torch.Tensor:
        """unembed(final_norm(hidden)): on the last layer's residual this gives the model's logits."""
        with torch.no_grad():
            return self.unembed(self.final_norm(hidden))


def _has_state(interventions) -> bool:
    from mechhybrid.state import is_state_intervention

    return any(is_state_intervention(item) for item in interventions)


def _record_into(sink: list) -> _Op:
    def fn(tensor, rows, stash):
        sink.append(tensor.clone())

    return _Op(slice(None), fn, records=True)
