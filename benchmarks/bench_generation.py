"""Batched generation: one `generate` call over prompts of different lengths vs a loop over the prompts, and vs
transformers' own `generate` on the same left-padded batch, as ratios measured in the same run.

    python benchmarks/bench_generation.py [--batch 16] [--new 8] [--repeats 3]
    python benchmarks/bench_generation.py --only keep-top-heads [--repeats 5]

Models: the tiny qwen3_5 and recurrent_gemma of tests/tiny_configs.py (left-padded and grouped strategies) and a
small qwen3_5-style hybrid (hidden 256, 3 Gated DeltaNet layers + 1 attention layer). Prompts: `batch` random
prompts of 12..40 tokens (all lengths distinct, so that grouping by length gains nothing), greedy, no EOS. Every
mechhybrid call carries Study B's generation-only ablation of attention (`phase="generation"`).

`--only keep-top-heads`: Study B's per-token head sparsification while decoding (`KeepTopHeads(2)`,
`phase="decode"`) on a small llama (hidden 256, 8 layers, 8 query heads over 2 key/value heads: every layer
attention), 64-token prompts + 16 new tokens, at batch 1 and 8, against transformers' own `generate` and
mechhybrid's `generate` without an intervention (goal: <= 1.3x transformers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from measure import interleaved_min_seconds

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _small():
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "qwen3_5_text", vocab_size=1024, hidden_size=256, num_hidden_layers=4,
        layer_types=["linear_attention"] * 3 + ["full_attention"], intermediate_size=768,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, linear_num_key_heads=4,
        linear_num_value_heads=8, linear_key_head_dim=64, linear_value_head_dim=64, tie_word_embeddings=True,
    )
    return AutoModelForCausalLM.from_config(config).eval()


def _prompts(batch: int, vocab: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    lengths = torch.randperm(29, generator=generator)[:batch] + 12  # distinct lengths in 12..40
    return [torch.randint(3, vocab, (int(n),), generator=generator) for n in lengths]


def bench_model(label: str, model, batch: int, new: int, repeats: int) -> None:
    import mechhybrid
    from mechhybrid import Ablate
    from mechhybrid.generation import generate

    hm = mechhybrid.load(model)
    prompts = _prompts(batch, hm.vocab_size)
    ablate = [Ablate(hm.components.by_kind("attention"))]
    options = {"max_new_tokens": new, "phase": "generation"}
    batched = generate(hm, prompts, ablate, **options)
    for row, prompt in enumerate(prompts):  # the ratio means nothing unless both give the same tokens
        assert torch.equal(batched.generated(row), generate(hm, prompt[None], ablate, **options).new_tokens[0])
    seconds = interleaved_min_seconds({
        "batched": lambda: generate(hm, prompts, ablate, **options),
        "loop": lambda: [generate(hm, p[None], ablate, **options) for p in prompts],
    }, repeats)
    ratio = seconds["loop"] / seconds["batched"]
    print(f"  {label:<34} {batched.strategy:<12} batched {seconds['batched'] * 1e3:8.1f} ms   "
          f"loop {seconds['loop'] * 1e3:8.1f} ms   loop / batched {ratio:5.2f}x")


def bench_against_transformers(model, batch: int, new: int, repeats: int) -> None:
    """transformers' `generate` (left-padded by hand, no intervention) vs mechhybrid with the ablation."""
    from transformers import GenerationConfig

    import mechhybrid
    from mechhybrid import Ablate
    from mechhybrid.generation import generate

    hm = mechhybrid.load(model)
    ablate = [Ablate(hm.components.by_kind("attention"))]
    config = GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=0)
    for size in (1, batch):
        prompts = _prompts(size, hm.vocab_size)
        width = max(len(p) for p in prompts)
        ids = torch.zeros(size, width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt):], mask[row, width - len(prompt):] = prompt, 1
        seconds = interleaved_min_seconds({
            "hf": lambda: model.generate(ids, generation_config=config, attention_mask=mask),
            "ours": lambda: generate(hm, prompts, ablate, max_new_tokens=new, phase="generation"),
        }, repeats)
        print(f"  batch {size:<3} transformers {seconds['hf'] * 1e3:8.1f} ms   mechhybrid (generation ablation) "
              f"{seconds['ours'] * 1e3:8.1f} ms   {seconds['ours'] / seconds['hf']:5.2f}x")


def _llama():
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "llama", vocab_size=4096, hidden_size=256, num_hidden_layers=8, intermediate_size=768,
        num_attention_heads=8, num_key_value_heads=2, head_dim=32, tie_word_embeddings=True,
    )
    return AutoModelForCausalLM.from_config(config).eval()


def bench_keep_top_heads(repeats: int, new: int = 16, prompt: int = 64) -> dict:
    """Seconds of transformers generate, mechhybrid generate, and mechhybrid generate with KeepTopHeads(2) in
    decode, at batch 1 and 8; the ratios to transformers printed."""
    from transformers import GenerationConfig

    import mechhybrid
    from mechhybrid.attention import KeepTopHeads
    from mechhybrid.generation import generate

    model = _llama()
    hm = mechhybrid.load(model)
    config = GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=0)
    keep = [KeepTopHeads(2, phase="decode")]
    out = {}
    for size in (1, 8):
        ids = torch.randint(3, 4096, (size, prompt), generator=torch.Generator().manual_seed(size))
        seconds = interleaved_min_seconds({
            "hf": lambda: model.generate(ids, generation_config=config, attention_mask=torch.ones_like(ids)),
            "plain": lambda: generate(hm, ids, max_new_tokens=new),
            "keep": lambda: generate(hm, ids, keep, max_new_tokens=new),
        }, repeats)
        out[size] = seconds
        print(f"  batch {size}: transformers {seconds['hf'] * 1e3:7.1f} ms   mechhybrid {seconds['plain'] * 1e3:7.1f} "
              f"ms ({seconds['plain'] / seconds['hf']:4.2f}x)   KeepTopHeads(2) decode {seconds['keep'] * 1e3:7.1f} "
              f"ms ({seconds['keep'] / seconds['hf']:4.2f}x transformers, {seconds['keep'] / seconds['plain']:4.2f}x "
              "mechhybrid)", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="prompts per call")
    parser.add_argument("--new", type=int, default=8, help="tokens generated per prompt")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (min reported)")
    parser.add_argument("--only", choices=("keep-top-heads",), help="run this measurement alone")
    args = parser.parse_args()
    torch.set_num_threads(1)  # shared 2-core machine: one thread gives the steadiest ratios
    print("small llama, 64-token prompts + 16 new tokens: KeepTopHeads(2) in decode vs transformers generate")
    bench_keep_top_heads(args.repeats)
    if args.only:
        return
    from tests.conftest import build_tiny

    print(f"{args.batch} prompts of different lengths, {args.new} new tokens each: one call vs a loop over prompts")
    bench_model("tiny qwen3_5 (tests/tiny_configs)", build_tiny("qwen3_5_text"), args.batch, args.new, args.repeats)
    bench_model("tiny recurrent_gemma", build_tiny("recurrent_gemma"), args.batch, args.new, args.repeats)
    bench_model("small qwen3_5 (hidden 256)", _small(), args.batch, args.new, args.repeats)
    print("\nsmall qwen3_5, mechhybrid with the ablation vs transformers generate without (left-padded batch)")
    bench_against_transformers(_small(), min(args.batch, 8), args.new, args.repeats)


if __name__ == "__main__":
    main()
