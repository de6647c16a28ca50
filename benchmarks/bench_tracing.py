"""Causal-tracing sweeps: time, as ratios against references measured in the same run, on one thread.

    python benchmarks/bench_tracing.py [--models hybrid-gdn ssm-mamba2] [--batch 4] [--seq 32] [--repeats 2]

For each zoo model: a component x position sweep (every component at every position of a batch of `batch`
prompts of `seq` tokens whose corrupted versions differ at 4 tokens), denoising, scored by a random projection
of the last token's logits. Contenders, timed in turns (benchmarks/measure.py):
- `loop`: one plain-hooked forward of the batch per (component, position), on an untouched copy of the model
  (= 1.00, the way transformer-lens patches);
- `transformer-lens`: its own `generic_activation_patch` on its TransformerBridge, where the bridge has a hook at
  every component's output (also one forward per patch);
- `sweep`: `mechhybrid.tracing.sweep` with every saving, then each saving alone: stacking only (full forwards
  of many patched runs at once), stacking + position reuse, stacking + layer reuse, and both reuses with one
  patched run per forward (no stacking); and everything but the skip of patches that write the base run's own
  values (here the 8 positions before the first corrupted token: every contender but this one skips them).
Each contender's values are checked against the loop's (the largest |difference| is printed), and each saving's
share is the full sweep's time without it over its time with it.

With `--states`: a state x position sweep (every recurrent layer after every token) against a loop of
`hm.run(corrupted, [PatchState(layer, t, source_ids=clean)])`, one segmented run per patch. With
`--state-memory N`: peak CPU memory of a state x position sweep over 4 positions of an N-token prompt on
hybrid-gdn, against one plain forward of that prompt (torch profiler, benchmarks/measure.py).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os

import torch

from measure import interleaved_min_seconds, peak_cpu_bytes

MODELS = ("hybrid-gdn", "hybrid-parallel", "hybrid-jamba", "hybrid-griffin", "ssm-mamba2", "transformer")
BRIDGE_NAMES = {"attention": ("attn",), "mlp": ("mlp", "moe", "feed_forward")}
"""Kind -> the names transformer-lens's bridge gives the module in a block (other mixers: MIXER_NAMES)."""
MIXER_NAMES = ("linear_attn", "mixer", "mamba", "ssm")


def _inputs(hm, batch: int, seq: int):
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(3, hm.vocab_size, (batch, seq), generator=generator)
    corrupted = clean.clone()
    corrupted[:, seq // 4: seq // 4 + 4] = torch.randint(3, hm.vocab_size, (batch, 4), generator=generator)
    weight = torch.randn(hm.vocab_size, generator=generator) / hm.vocab_size ** 0.5  # a value of order 1
    return clean, corrupted, lambda logits: (logits.float() @ weight).mean()


def _resolve(root, dotted: str):
    for part in dotted.split("."):
        root = root[int(part)] if part.isdigit() else getattr(root, part)
    return root


def _first(value):
    return value[0] if isinstance(value, tuple) else value


def hook_loop(model, components, clean, corrupted, metric) -> torch.Tensor:
    """`[component, position]`: one forward of the corrupted batch per patch, with a plain torch hook."""
    seen = {}

    def keep(component):
        def hook(module, args, output):
            seen.setdefault(component, _first(output).clone())  # returns None: the output flows on unchanged

        return hook

    handles = [_resolve(model, c.path).register_forward_hook(keep(c)) for c in components]
    with torch.no_grad():
        model(clean)
    for handle in handles:
        handle.remove()
    out = torch.zeros(len(components), clean.shape[1])
    for i, component in enumerate(components):
        module = _resolve(model, component.path)
        for p in range(clean.shape[1]):
            def patch(m, a, output, p=p, source=seen[component]):
                tensor = _first(output).clone()
                tensor[:, p] = source[:, p]
                return (tensor, *output[1:]) if isinstance(output, tuple) else tensor

            handle = module.register_forward_hook(patch)
            with torch.no_grad():
                out[i, p] = metric(model(corrupted).logits[:, -1])
            handle.remove()
    return out


def _bridge(hm, name: str):
    """transformer-lens's bridge on a copy of the weights, and its hook name for each component (None when it
    lacks one: its RecurrentGemma bridge exposes only whole blocks)."""
    from transformer_lens.model_bridge import TransformerBridge

    import mechhybrid.zoo

    path = os.path.join(os.path.dirname(mechhybrid.zoo.__file__), "models", name)
    bridge = TransformerBridge.boot_transformers(path, hf_model=copy.deepcopy(hm.hf_model), tokenizer=hm.tokenizer)
    bridge.eval()
    names = {}
    for component in hm.components:
        candidates = BRIDGE_NAMES.get(component.kind, MIXER_NAMES)
        found = [f"blocks.{component.layer}.{c}.hook_out" for c in candidates
                 if f"blocks.{component.layer}.{c}.hook_out" in bridge.hook_dict]
        if not found:
            return bridge, None
        names[component] = found[0]
    return bridge, names


def tl_patch(bridge, names, clean, corrupted, metric) -> torch.Tensor:
    """`[component, position]` through `generic_activation_patch`, one call per component hook (a None layer
    column makes it use the full hook name as given)."""
    import pandas as pd
    from transformer_lens.patching import generic_activation_patch

    _, cache = bridge.run_with_cache(clean)

    def setter(activation, index, clean_activation):
        activation[:, index[1]] = clean_activation[:, index[1]]
        return activation

    positions = pd.DataFrame({"layer": [None] * clean.shape[1], "pos": list(range(clean.shape[1]))})
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bars
        rows = [generic_activation_patch(bridge, corrupted, cache, lambda logits: metric(logits[:, -1]), setter,
                                         hook, index_df=positions) for hook in names.values()]
    return torch.stack(rows)


def bench(name: str, batch: int, seq: int, repeats: int, skip_tl: bool) -> None:
    import mechhybrid
    from mechhybrid.state.spec import spec_for
    from mechhybrid.tracing import Reuse, sweep

    hm = mechhybrid.load(f"zoo:{name}")
    plain = copy.deepcopy(hm.hf_model)  # untouched by nnsight's wrapping
    clean, corrupted, metric = _inputs(hm, batch, seq)
    components = list(hm.components)
    run = lambda **options: sweep(hm, clean, corrupted, "components", metric, **options).values
    fns = {
        "loop": lambda: hook_loop(plain, components, clean, corrupted, metric),
        "sweep": lambda: run(),
        "stacking only": lambda: run(reuse=Reuse(positions=False, layers=False)),
        "+ position reuse": lambda: run(reuse=Reuse(layers=False)),
        "+ layer reuse": lambda: run(reuse=Reuse(positions=False)),
        "reuse, no stacking": lambda: run(max_rows=batch),
        "no unchanged skip": lambda: run(reuse=Reuse(unchanged=False)),
    }
    bridge = names = None
    if not skip_tl:
        bridge, names = _bridge(hm, name)
        if names is not None:
            fns["transformer-lens"] = lambda: tl_patch(bridge, names, clean, corrupted, metric)
    reference = fns["loop"]()
    gaps = {key: (fn() - reference).abs().max().item() for key, fn in fns.items() if key != "loop"}
    times = interleaved_min_seconds(fns, repeats)
    work = sweep(hm, clean, corrupted, "components", metric).work
    loop = times["loop"]
    print(f"{name} ({hm.family}, cache continues by {spec_for(hm).continuation}): {len(components)} components x "
          f"{seq} positions, batch {batch}; loop {loop:.2f} s; sweep computes {work:.2f} of the loop's layer-tokens")
    for key in ("transformer-lens", "sweep", "stacking only", "+ position reuse", "+ layer reuse",
                "reuse, no stacking", "no unchanged skip"):
        if key in times:
            print(f"  {key:20s} {loop / times[key]:5.2f}x faster than the loop  ({times[key]:6.2f} s, "
                  f"max |gap| {gaps[key]:.1e})")
    if not skip_tl and names is None:
        print("  transformer-lens     not run: its bridge has no hook at each component's output")
    elif "transformer-lens" in times:
        print(f"  sweep vs transformer-lens: {times['transformer-lens'] / times['sweep']:.2f}x faster")
    full = times["sweep"]
    print(f"  shares: position reuse {times['+ layer reuse'] / full:.2f}x, layer reuse "
          f"{times['+ position reuse'] / full:.2f}x, stacking {times['reuse, no stacking'] / full:.2f}x, skipping "
          f"unchanged patches {times['no unchanged skip'] / full:.2f}x")


def bench_states(name: str, batch: int, seq: int, repeats: int) -> None:
    import mechhybrid
    from mechhybrid.state import PatchState
    from mechhybrid.tracing import state_sites, sweep

    hm = mechhybrid.load(f"zoo:{name}")
    sites = state_sites(hm)
    if not sites:
        return
    clean, corrupted, metric = _inputs(hm, batch, seq)

    def loop():
        return torch.tensor([[float(metric(hm.run(corrupted, [PatchState([s.layer], t, source_ids=clean)])
                                           .logits[:, -1])) for t in range(seq)] for s in sites])

    fns = {"loop": loop, "sweep": lambda: sweep(hm, clean, corrupted, sites, metric).values}
    gap = (fns["sweep"]() - fns["loop"]()).abs().max().item()
    times = interleaved_min_seconds(fns, repeats)
    print(f"{name}: {len(sites)} states x {seq} positions, batch {batch}: sweep {times['loop'] / times['sweep']:.2f}x "
          f"faster than a PatchState loop ({times['sweep']:.2f} s vs {times['loop']:.2f} s, max |gap| {gap:.1e})")


def bench_state_memory(seq: int) -> None:
    import mechhybrid
    from mechhybrid.tracing import state_sites, sweep

    hm = mechhybrid.load("zoo:hybrid-gdn")
    clean, corrupted, metric = _inputs(hm, 1, seq)
    positions = [seq // 8, seq // 2, seq - seq // 8, seq - 2]
    swept = peak_cpu_bytes(lambda: sweep(hm, clean, corrupted, state_sites(hm), metric, positions=positions))
    with torch.no_grad():
        plain = peak_cpu_bytes(lambda: hm.hf_model(corrupted))
    print(f"hybrid-gdn, {seq} tokens: state x position sweep ({len(state_sites(hm))} layers x {len(positions)} "
          f"positions) peaks at {swept / 2**20:.0f} MiB, {swept / plain:.2f}x one plain forward "
          f"({plain / 2**20:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-tl", action="store_true", help="do not time transformer-lens")
    parser.add_argument("--states", action="store_true", help="also time state x position sweeps")
    parser.add_argument("--state-memory", type=int, default=0, metavar="N", help="peak memory at N tokens")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.models:
        bench(name, args.batch, args.seq, args.repeats, args.skip_tl)
        if args.states:
            bench_states(name, args.batch, args.seq, args.repeats)
    if args.state_memory:
        bench_state_memory(args.state_memory)


if __name__ == "__main__":
    main()
