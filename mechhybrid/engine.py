"""The one engine that applies interventions inside an nnsight trace.

Every intervention compiles to operations at *hook points*: `(module path, "in" | "out")`, the first input or
the (first) output of a module. Points are visited in the model's own execution order (nnsight 0.8 refuses
out-of-order access), and each point is fetched once per forward, whatever number of operations and
intervention sets touch it. Alternative intervention sets run as one stacked batch: set `i` owns rows
`[i * batch, (i + 1) * batch)` of the stacked input, so N sets cost one forward over N x batch rows instead of N
Python-level forwards (benchmarks/bench_engine.py).

Outputs from other inputs (`mean`, `resample`, `Patch`) are captured first, in one clean forward per distinct
source tensor.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from mechhybrid.components import Component
from mechhybrid.errors import MechHybridError
from mechhybrid.interventions import Ablate, AblateHeads, Capture, KeepHeads, Patch, Steer

Point = tuple[str, str]  # (module path, "in" | "out")


@dataclass
class _Op:
    """One in-place operation on the tensor seen at a hook point, restricted to one set's rows."""

    rows: slice
    fn: Callable[[torch.Tensor, slice, dict], None]


@dataclass
class Plan:
    """Everything one stacked forward must do: operations per hook point, and the sources they read."""

    batch: int
    seq: int
    ops: dict[Point, list[_Op]] = field(default_factory=lambda: defaultdict(list))
    sources: dict[int, tuple[torch.Tensor, set[Point]]] = field(default_factory=dict)
    source_values: dict[tuple[int, Point], torch.Tensor] = field(default_factory=dict)
    captures: list[dict] = field(default_factory=list)

    def need_source(self, ids: torch.Tensor, point: Point) -> Callable[[], torch.Tensor]:
        """Register that `point` must be captured on `ids`; returns a getter for the captured value."""
        key = id(ids)
        self.sources.setdefault(key, (ids, set()))[1].add(point)
        return lambda: self.source_values[(key, point)]


def _read(value) -> torch.Tensor:
    return value[0] if isinstance(value, (tuple, list)) else value


def _position_mask(positions, seq: int) -> torch.Tensor | None:
    """`bool[seq]`, or None for every position; negative positions count from the end."""
    if positions is None:
        return None
    mask = torch.zeros(seq, dtype=torch.bool)
    for p in positions:
        if not -seq <= p < seq:
            raise MechHybridError(f"position {p} out of range for a sequence of {seq} tokens")
        mask[p] = True
    return mask


def _write(tensor: torch.Tensor, rows: slice, new: torch.Tensor, mask: torch.Tensor | None) -> None:
    """tensor[rows] <- new where mask (broadcast over trailing dims), in place."""
    new = new.to(tensor.device, tensor.dtype)  # a zero ablation's constant lives on the CPU
    if mask is None:
        tensor[rows] = new
        return
    current = tensor[rows]
    if mask.ndim == 1:  # [seq] -> [1, seq]
        mask = mask[None]
    mask = mask.to(tensor.device).reshape(mask.shape + (1,) * (current.ndim - mask.ndim))
    tensor[rows] = torch.where(mask, new, current)


def _head_mask(heads, component: Component, batch: int, seq: int, positions) -> torch.Tensor:
    """`bool[batch, seq, head]` from a head list (x positions) or a per-token mask."""
    n_heads = component.n_heads
    if n_heads is None:
        raise MechHybridError(f"{component.name} has no heads to select")
    if isinstance(heads, torch.Tensor) and heads.dtype == torch.bool:
        if tuple(heads.shape) != (batch, seq, n_heads):
            raise MechHybridError(
                f"head mask for {component.name} must have shape {(batch, seq, n_heads)}, got {tuple(heads.shape)}"
            )
        mask = heads.clone()
    else:
        heads = [int(h) for h in (heads.tolist() if isinstance(heads, torch.Tensor) else heads)]
        bad = [h for h in heads if not 0 <= h < n_heads]
        if bad:
            raise MechHybridError(f"head index {bad[0]} out of range: {component.name} has heads 0..{n_heads - 1}")
        mask = torch.zeros(batch, seq, n_heads, dtype=torch.bool)
        mask[:, :, heads] = True
    position_mask = _position_mask(positions, seq)
    if position_mask is not None:
        mask &= position_mask[None, :, None]
    return mask


def _split_heads(tensor: torch.Tensor, rows: slice, n_heads: int) -> torch.Tensor:
    """The rows of an output projection's input viewed as `[batch, seq, head, head_dim]`."""
    part = tensor[rows]
    return part.reshape(*part.shape[:-1], n_heads, part.shape[-1] // n_heads)


def _zero_heads(mask: torch.Tensor) -> Callable:
    def fn(tensor, rows, stash):
        heads = _split_heads(tensor, rows, mask.shape[-1])
        keep = (~mask).to(tensor.device)[..., None]
        tensor[rows] = (heads * keep).reshape(tensor[rows].shape)

    return fn


def _patch_heads(get_source, mask: torch.Tensor) -> Callable:
    def fn(tensor, rows, stash):
        heads = _split_heads(tensor, rows, mask.shape[-1])
        source = get_source().reshape(heads.shape)
        patched = torch.where(mask.to(tensor.device)[..., None], source.to(tensor.dtype), heads)
        tensor[rows] = patched.reshape(tensor[rows].shape)

    return fn


def _replace(get_value, mask) -> Callable:
    return lambda tensor, rows, stash: _write(tensor, rows, get_value().expand_as(tensor[rows]), mask)


def compile_plan(hm, input_ids: torch.Tensor, intervention_sets: Sequence[Sequence], phase: str) -> Plan:
    """Turn each set of interventions into operations at hook points, checked against the model and input."""
    batch, seq = input_ids.shape
    plan = Plan(batch=batch, seq=seq)
    known = set(hm.components)
    for index, interventions in enumerate(intervention_sets):
        rows = slice(index * batch, (index + 1) * batch)
        captures: dict = {}
        plan.captures.append(captures)
        for item in interventions:
            if item.phase not in ("all", phase):
                continue
            for component in _components_of(item):
                if component not in known:
                    raise MechHybridError(f"{component.name} ({component.path}) is not a component of this model")
            _compile_one(hm, plan, item, rows, captures)
    return plan


def _components_of(item) -> tuple[Component, ...]:
    return item.components if hasattr(item, "components") else (item.component,)


def _compile_one(hm, plan: Plan, item, rows: slice, captures: dict) -> None:
    seq, batch = plan.seq, plan.batch
    mask = _position_mask(getattr(item, "positions", None), seq)
    if isinstance(item, Ablate):
        _compile_ablate(hm, plan, item, rows, mask)
    elif isinstance(item, (AblateHeads, KeepHeads)):
        heads = _head_mask(item.heads, item.component, batch, seq, None)
        position_mask = _position_mask(item.positions, seq)
        ablate = heads if isinstance(item, AblateHeads) else ~heads
        if position_mask is not None:
            ablate &= position_mask[None, :, None]
        plan.ops[(item.component.out_proj, "in")].append(_Op(rows, _zero_heads(ablate)))
    elif isinstance(item, Patch):
        _check_source(item.source_ids, batch, seq, "Patch source_ids")
        for component in item.components:
            if item.heads is None:
                get = plan.need_source(item.source_ids, (component.path, "out"))
                plan.ops[(component.path, "out")].append(_Op(rows, _replace(get, mask)))
            else:
                heads = _head_mask(item.heads, component, batch, seq, item.positions)
                get = plan.need_source(item.source_ids, (component.out_proj, "in"))
                plan.ops[(component.out_proj, "in")].append(_Op(rows, _patch_heads(get, heads)))
    elif isinstance(item, Steer):
        d_model = hm.d_model
        if item.vector.shape[0] != d_model:
            raise MechHybridError(f"Steer vector has {item.vector.shape[0]} dims; the model's d_model is {d_model}")
        delta = (item.vector * item.scale)

        def steer(tensor, rows, stash, delta=delta, mask=mask):
            _write(tensor, rows, tensor[rows] + delta.to(tensor.device, tensor.dtype), mask)

        plan.ops[(item.component.path, "out")].append(_Op(rows, steer))
    elif isinstance(item, Capture):
        _compile_capture(hm, plan, item, rows, captures)
    else:
        raise MechHybridError(f"not an intervention: {type(item).__name__}")


def _check_source(ids, batch: int, seq: int, what: str) -> None:
    if not isinstance(ids, torch.Tensor) or tuple(ids.shape) != (batch, seq):
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise MechHybridError(f"{what} must have the input's shape {(batch, seq)}, got {shape}")


def _compile_ablate(hm, plan: Plan, item: Ablate, rows: slice, mask) -> None:
    seq = plan.seq
    if item.method == "skip":
        for layer_path in dict.fromkeys(c.layer_path for c in item.components):
            key = ("skip", layer_path, rows.start)

            def keep_input(tensor, rows, stash, key=key):
                stash[key] = tensor[rows].clone()

            def restore(tensor, rows, stash, key=key, mask=mask):
                _write(tensor, rows, stash.pop(key), mask)

            plan.ops[(layer_path, "in")].append(_Op(rows, keep_input))
            plan.ops[(layer_path, "out")].append(_Op(rows, restore))
        return
    for component in item.components:
        point = (component.path, "out")
        if item.method == "zero":
            plan.ops[point].append(_Op(rows, _replace(lambda: torch.zeros(()), mask)))
        elif item.method == "resample":
            _check_source(item.source_ids, plan.batch, seq, "resample source_ids")
            plan.ops[point].append(_Op(rows, _replace(plan.need_source(item.source_ids, point), mask)))
        else:
            reference = item.reference_ids
            if item.per_position and reference.shape[1] < seq:
                raise MechHybridError(
                    f"per-position mean needs reference sequences of at least {seq} tokens, got {reference.shape[1]}"
                )
            get = plan.need_source(reference, point)
            if item.per_position:
                mean = lambda get=get: get().mean(0)[:seq]  # [seq, d_model]
            else:
                mean = lambda get=get: get().mean((0, 1))  # [d_model]
            plan.ops[point].append(_Op(rows, _replace(mean, mask)))


def _compile_capture(hm, plan: Plan, item: Capture, rows: slice, captures: dict) -> None:
    index = None if item.positions is None else torch.tensor(item.positions)
    for component in item.components:
        if component in captures:
            raise MechHybridError(f"{component.name} is captured twice in one intervention set")
        if item.per_head:
            if component.n_heads is None:
                raise MechHybridError(f"{component.name} has no heads: per_head capture needs one with heads")
            weight = hm.out_proj_weight(component)  # [d_model, head * head_dim]

            def per_head(tensor, rows, stash, component=component, weight=weight):
                heads = _split_heads(tensor, rows, component.n_heads)
                w = weight.to(heads.dtype).reshape(weight.shape[0], component.n_heads, -1)
                contrib = torch.einsum("bshd,ohd->bsho", heads, w)  # [batch, seq, head, d_model]
                captures[component] = contrib if index is None else contrib[:, index]

            plan.ops[(component.out_proj, "in")].append(_Op(rows, per_head))
        else:

            def record(tensor, rows, stash, component=component):
                value = tensor[rows].clone()
                captures[component] = value if index is None else value[:, index]

            plan.ops[(component.path, "out")].append(_Op(rows, record))


def visit_points(hm, ops: dict[Point, list[_Op]], stash: dict) -> None:
    """Inside a trace: fetch each hook point in execution order and apply its operations."""
    for point in sorted(ops, key=hm.execution_index):
        path, io = point
        envoy = hm.envoy_at(path)
        tensor = _read(envoy.output if io == "out" else envoy.input)
        for op in ops[point]:
            op.fn(tensor, op.rows, stash)


def capture_sources(hm, plan: Plan) -> None:
    """One clean forward per distinct source tensor, recording the points the plan reads from it."""
    for key, (ids, points) in plan.sources.items():
        stash: dict = {}
        ops = {p: [_Op(slice(None), _stash_point(p))] for p in points}
        with torch.no_grad(), hm.nn.trace(ids.to(hm.device)):
            visit_points(hm, ops, stash)
        for point in points:
            plan.source_values[(key, point)] = stash[point]


def _stash_point(point: Point) -> Callable:
    def fn(tensor, rows, stash):
        stash[point] = tensor.clone()

    return fn
