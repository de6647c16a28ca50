"""Engine overhead and sweep speed, as ratios against references measured in the same run.

    python benchmarks/bench_engine.py [--repeats 5]

For a tiny (~40k parameters) and a small (~10M parameters) qwen3_5-style hybrid:
- traced forward (no intervention) vs the plain transformers forward            (goal <= 1.10x)
- a zero-ablation sweep over every component via logits_many vs one hm.logits per set (goal >= 5x faster)
- the same sweep vs as many plain batched forwards with no tracing (goal within 1.3x)
"""

from __future__ import annotations

import argparse
import copy

import torch

from measure import interleaved_min_seconds


def _build(hidden: int, layers: int, vocab: int):
    from transformers import AutoConfig, AutoModelForCausalLM

    import mechhybrid

    torch.manual_seed(0)
    kinds = ["linear_attention", "linear_attention", "linear_attention", "full_attention"] * (layers // 4)
    config = AutoConfig.for_model(
        "qwen3_5_text", vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, layer_types=kinds,
        intermediate_size=hidden * 3, num_attention_heads=4, num_key_value_heads=2, head_dim=hidden // 4,
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=hidden // 4,
        linear_value_head_dim=hidden // 4, tie_word_embeddings=True,
    )
    model = AutoModelForCausalLM.from_config(config).eval()
    # The reference is an untouched copy: nnsight wraps the modules of the model it is given, so timing the
    # wrapped model's plain call would hide part of the tracing cost.
    plain = copy.deepcopy(model)
    return plain, mechhybrid.load(model)


def bench(name: str, hidden: int, layers: int, vocab: int, batch: int, seq: int, repeats: int) -> None:
    from mechhybrid import Ablate

    model, hm = _build(hidden, layers, vocab)
    ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(0))
    sets = [[Ablate([c])] for c in hm.components]
    stacked = ids.repeat(len(sets), 1)

    def plain_forward(batch_ids):
        with torch.no_grad():
            return model(batch_ids)

    t = interleaved_min_seconds(
        {
            "plain": lambda: plain_forward(ids),
            "traced": lambda: hm.logits(ids),
            "plain_batched": lambda: plain_forward(stacked),
            "many": lambda: hm.logits_many(ids, sets),
            "loop": lambda: [hm.logits(ids, s) for s in sets],
        },
        repeats,
    )
    plain, traced, plain_batched, many, loop = (t[k] for k in ("plain", "traced", "plain_batched", "many", "loop"))
    print(f"{name}: {hm.n_params / 1e6:.2f}M params, batch {batch} x seq {seq}, {len(sets)} components")
    print(f"  traced / plain forward            {traced / plain:6.2f}x  ({traced * 1e3:.1f} ms vs {plain * 1e3:.1f} ms)")
    print(f"  sweep: loop / logits_many         {loop / many:6.2f}x faster ({loop * 1e3:.0f} ms vs {many * 1e3:.0f} ms)")
    print(f"  sweep: logits_many / plain batched {many / plain_batched:5.2f}x  ({plain_batched * 1e3:.0f} ms untraced)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable ratios on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bench("tiny", hidden=32, layers=4, vocab=97, batch=2, seq=32, repeats=args.repeats)
    bench("small", hidden=384, layers=8, vocab=4096, batch=2, seq=128, repeats=args.repeats)


if __name__ == "__main__":
    main()
