"""Attention-pattern capture and attention-logit edits vs a plain forward, as ratios measured in the same run.

    python benchmarks/bench_attention.py [--repeats 5] [--seq 256]

For a small llama (every layer attention) and a small qwen3_5-style hybrid (one attention layer in four):
- plain transformers forward (an untouched copy of the model)                       reference
- hm.logits, no intervention (nnsight trace)                                         traced overhead
- hm.attention_patterns, default: last query of every attention layer                capture overhead
- hm.attention_patterns(positions=None): every query ([head, seq, seq] per layer)     full-pattern cost
- hm.logits with MaskKeys on every query of every attention layer (eager kernel)     edit cost
and the peak CPU memory of the default capture vs the full one (torch profiler).
"""

from __future__ import annotations

import argparse
import copy

import torch

from measure import interleaved_min_seconds, peak_cpu_bytes


def _build(model_type: str, hidden: int, layers: int, vocab: int):
    from transformers import AutoConfig, AutoModelForCausalLM

    import mechhybrid

    torch.manual_seed(0)
    extra = {}
    if model_type == "qwen3_5_text":
        extra = dict(
            layer_types=["linear_attention", "linear_attention", "linear_attention", "full_attention"] * (layers // 4),
            linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=hidden // 4,
            linear_value_head_dim=hidden // 4,
        )
    config = AutoConfig.for_model(
        model_type, vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, intermediate_size=hidden * 3,
        num_attention_heads=8, num_key_value_heads=2, head_dim=hidden // 8, tie_word_embeddings=True, **extra,
    )
    model = AutoModelForCausalLM.from_config(config).eval()
    plain = copy.deepcopy(model)  # nnsight wraps the modules of the model it is given
    return plain, mechhybrid.load(model)


def bench(model_type: str, batch: int, seq: int, repeats: int) -> None:
    from mechhybrid.attention import MaskKeys

    plain, hm = _build(model_type, hidden=256, layers=8, vocab=4096)
    ids = torch.randint(0, 4096, (batch, seq), generator=torch.Generator().manual_seed(0))
    mask = [MaskKeys(keys=list(range(0, seq, 7)))]

    def plain_forward():
        with torch.no_grad():
            return plain(ids)

    t = interleaved_min_seconds(
        {
            "plain": plain_forward,
            "traced": lambda: hm.logits(ids),
            "last": lambda: hm.attention_patterns(ids),
            "full": lambda: hm.attention_patterns(ids, positions=None),
            "edit": lambda: hm.logits(ids, mask),
        },
        repeats,
    )
    n_attention = sum(c.kind == "attention" for c in hm.components)
    print(f"{model_type}: {hm.n_params / 1e6:.1f}M params, {n_attention} attention layers, batch {batch} x seq {seq}, "
          f"attention implementation {hm.config._attn_implementation}")
    for name, label in (("traced", "traced forward, no intervention"), ("last", "capture, last query (default)"),
                        ("full", "capture, every query"), ("edit", "MaskKeys on every query")):
        print(f"  {label:34s} {t[name] / t['plain']:5.2f}x plain  {t[name] / t['traced']:5.2f}x traced  "
              f"({t[name] * 1e3:.1f} ms; plain {t['plain'] * 1e3:.1f} ms)")
    last = peak_cpu_bytes(lambda: hm.attention_patterns(ids))
    full = peak_cpu_bytes(lambda: hm.attention_patterns(ids, positions=None))
    base = peak_cpu_bytes(lambda: hm.logits(ids))
    print(f"  peak CPU memory: traced {base / 2**20:.1f} MiB, last-query capture {last / 2**20:.1f} MiB, "
          f"every-query capture {full / 2**20:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable ratios on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for model_type in ("llama", "qwen3_5_text"):
        bench(model_type, args.batch, args.seq, args.repeats)


if __name__ == "__main__":
    main()
