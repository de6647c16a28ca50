"""The zoo's benchmarks (mechhybrid.zoo.benchmarks) as Tasks, and held-out reference text for them.

Items are taken as the zoo builds them (same ids, same answer spans, same labels: a needle's context length and
depth); `limit` takes a seeded sample in the benchmark's own order, so a needle grid keeps all its context
lengths and depths.
"""

from __future__ import annotations

from .sampling import sample_indices
from .tasks import ChoiceItem, ChoiceTask, LMTask, SpanItem, SpanTask

__all__ = ["zoo_loaders", "zoo_task", "reference_docs", "N_REF_DOCS", "REF_STREAM"]

N_REF_DOCS = 8
REF_STREAM = "analyses-reference"
"""RNG stream of the reference text: new documents of the zoo language, never a benchmark item."""


def reference_docs(n: int = N_REF_DOCS, length: int = 256) -> list[tuple[int, ...]]:
    """Held-out running text that mean and resample ablations draw on (seeded, fixed)."""
    from mechhybrid.zoo import language as lang
    from mechhybrid.zoo.tokenizer import encode_words

    return [tuple(encode_words(lang.text_doc(lang.doc_rng(0, REF_STREAM, i), length).words)) for i in range(n)]


def zoo_task(name: str, limit: int, seed: int):
    """The zoo benchmark `name` as a Task, at most `limit` items."""
    from mechhybrid.zoo.benchmarks import get_benchmark

    bench = get_benchmark(name)
    items = [bench.items[i] for i in sample_indices(len(bench.items), limit, seed)]
    if name == "lm":
        return LMTask(name, bench.version, tuple(tuple(it.input_ids) for it in items))
    if name == "facts":
        return ChoiceTask(name, bench.version, tuple(
            ChoiceItem(tuple(it.input_ids), tuple(tuple(c) for c in it.choices), it.correct, tuple(it.meta))
            for it in items))
    return SpanTask(name, bench.version, tuple(
        SpanItem(tuple(it.input_ids), tuple(tuple(s) for s in it.answer_spans), tuple(it.meta)) for it in items))


def zoo_loaders(hm, limit: int, seed: int) -> dict:
    """name -> loader() -> (Task, reference docs or None) for every zoo benchmark."""
    from mechhybrid.zoo.benchmarks import benchmark_names

    def loader(name):
        return lambda: (zoo_task(name, limit, seed), reference_docs() if name == "lm" else None)

    return {name: loader(name) for name in benchmark_names()}
