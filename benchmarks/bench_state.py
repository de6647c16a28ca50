"""Recurrent state and generation: time and peak memory, as ratios against references measured in the same run.

    python benchmarks/bench_state.py [--seq 2048] [--repeats 3] [--skip-tl]

On one qwen3_5-style hybrid (hidden 256, 3 Gated DeltaNet layers + 1 attention layer, 8 value heads of
64 x 64 state: 128 state floats per unit of width, half Qwen3-Next's 32 heads of 128 x 128 at width 2,048, so
the trajectory's share of memory is smaller here than at real scale):
- the state of one layer after one position of a `seq`-token prompt: `read_state` vs transformer-lens 4.3's
  eager scan (`eager_scan=True`, `hook_ssm_state`), which materialises the `[batch, seq, head, d_k, d_v]`
  trajectory (goal >= 10x less memory, faster);
- 32 greedy tokens with a decode-phase ablation: `mechhybrid.generation.generate` vs plain transformers
  `generate` with no intervention (goal <= 1.3x);
- the drift of every tiny family's cached prefill / decode from its full forward (`check_cache`).
Peak memory is the peak of the running sum of CPU allocations recorded by the torch profiler.
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from measure import interleaved_min_seconds, peak_cpu_bytes


def _build():
    from transformers import AutoConfig, AutoModelForCausalLM

    import mechhybrid

    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "qwen3_5_text", vocab_size=1024, hidden_size=256, num_hidden_layers=4,
        layer_types=["linear_attention"] * 3 + ["full_attention"], intermediate_size=768,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, linear_num_key_heads=4,
        linear_num_value_heads=8, linear_key_head_dim=64, linear_value_head_dim=64, tie_word_embeddings=True,
    )
    model = AutoModelForCausalLM.from_config(config).eval()
    return model, mechhybrid.load(model)


def _bridge(model):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import PreTrainedTokenizerFast

    directory = tempfile.mkdtemp()
    model.config.save_pretrained(directory)
    words = Tokenizer(models.WordLevel({f"w{i}": i for i in range(1024)}, unk_token="w0"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="w0", pad_token="w1", eos_token="w2").save_pretrained(directory)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
    return TransformerBridge.boot_transformers(directory, hf_model=model, tokenizer=tokenizer)


def bench_read_state(seq: int, repeats: int, skip_tl: bool) -> None:
    from mechhybrid.state import read_state

    model, hm = _build()
    ids = torch.randint(0, 1024, (1, seq), generator=torch.Generator().manual_seed(0))
    layer, fns = 1, {}
    for position in (seq - 1, seq // 2 - 1):
        fns[f"read_state @ {position}"] = lambda position=position: read_state(hm, ids, [layer], [position])
    fns["plain forward (no state)"] = lambda: model(ids, use_cache=False)
    if not skip_tl:
        bridge = _bridge(_build()[0])  # its own copy of the same weights: the bridge re-wires what it wraps
        bridge.blocks[layer].linear_attn.eager_scan = True
        name = f"blocks.{layer}.linear_attn.hook_ssm_state"

        def theirs():
            _, cache = bridge.run_with_cache(ids, names_filter=name)
            return cache[name][:, seq - 1].clone()

        with torch.no_grad():
            reference = read_state(hm, ids, [layer], [seq - 1])[(layer, seq - 1)].recurrent
            assert (theirs() - reference).abs().max().item() < 1e-4, "transformer-lens disagrees with read_state"
        fns["transformer-lens eager scan"] = theirs
    seconds = interleaved_min_seconds(fns, repeats)
    with torch.no_grad():
        rows = [(label, seconds[label], peak_cpu_bytes(fn)) for label, fn in fns.items()]
    print(f"\nstate of layer {layer} at one position of a {seq}-token prompt "
          f"(trajectory would be {seq * 8 * 64 * 64 * 4 / 2**20:.0f} MiB per layer)")
    base_time, base_mem = rows[0][1], rows[0][2]
    for label, seconds, peak in rows:
        print(f"  {label:<30} {seconds * 1e3:9.1f} ms ({seconds / base_time:5.2f}x)  peak {peak / 2**20:8.1f} MiB "
              f"({peak / base_mem:5.2f}x)")


def bench_generate(repeats: int, new: int = 32, prompt: int = 64) -> None:
    from transformers import GenerationConfig

    from mechhybrid import Ablate
    from mechhybrid.generation import generate

    model, hm = _build()
    ids = torch.randint(0, 1024, (1, prompt), generator=torch.Generator().manual_seed(1))
    attention = hm.components.by_kind("attention")[0]
    config = GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=None, pad_token_id=0)
    mask = torch.ones_like(ids)
    seconds = interleaved_min_seconds({
        "hf": lambda: model.generate(ids, generation_config=config, attention_mask=mask),
        "plain": lambda: generate(hm, ids, max_new_tokens=new),
        "ablated": lambda: generate(hm, ids, [Ablate([attention], phase="decode")], max_new_tokens=new),
    }, repeats)
    hf, plain, ablated = seconds["hf"], seconds["plain"], seconds["ablated"]
    print(f"\n{new} greedy tokens after a {prompt}-token prompt")
    print(f"  transformers generate (no intervention)  {hf * 1e3:8.1f} ms (1.00x)")
    print(f"  mechhybrid generate (no intervention)    {plain * 1e3:8.1f} ms ({plain / hf:4.2f}x)")
    print(f"  mechhybrid generate (decode ablation)    {ablated * 1e3:8.1f} ms ({ablated / hf:4.2f}x)")


def bench_drift() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.conftest import build_tiny
    from tests.state.helpers import STATEFUL

    import mechhybrid
    from mechhybrid.check_cache import check_cache

    print("\ncache drift of the tiny families (32 tokens, cache filled with 28; max |diff|)")
    print(f"  {'family':<18} {'declared':<8} {'prefill':>9} {'decode':>9} {'state(prefill)':>15} {'state(decode)':>14}")
    for model_type in STATEFUL:
        report = check_cache(mechhybrid.load(build_tiny(model_type)))
        state = lambda mode: max((getattr(d, f"state_{mode}") or 0.0) for d in report.layers)
        print(f"  {report.family:<18} {report.continuation:<8} {report.logits_prefill:9.1e} "
              f"{report.logits_decode:9.1e} {state('prefill'):15.1e} {state('decode'):14.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=2048, help="prompt length for the state read")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (min reported)")
    parser.add_argument("--skip-tl", action="store_true", help="skip the transformer-lens reference")
    args = parser.parse_args()
    torch.set_num_threads(1)  # shared 2-core machine: one thread gives the steadiest ratios
    bench_read_state(args.seq, args.repeats, args.skip_tl)
    bench_generate(args.repeats)
    bench_drift()


if __name__ == "__main__":
    main()
