"""How a generated answer is scored against the needle's answer: three scorers, each 0..1 per prompt.

- `exact`: the first generated tokens equal the answer's tokens (the zoo's values are 2 tokens; chance 1 in 100
  for a zoo value).
- `substring`: Study B's substring credit, 0..5 points normalised to 0..1: the answer is cut into up to 5
  consecutive word chunks and each chunk found (case-insensitive) in the output earns a point (our reading of
  Needle_test's keyword credit; Study B's numbers are on this 0..5 scale before normalising).
- `string_match_all`: RULER's needle score, the fraction of reference strings contained in the output
  (case-insensitive; one reference here, the whole answer), on 0..1 rather than RULER's 0..100.
"""

from __future__ import annotations

__all__ = ["SCORERS", "score_exact", "score_substring", "score_string_match_all", "score"]

SCORERS = ("exact", "substring", "string_match_all")


def score_exact(generated_ids, answer_ids) -> float:
    return float(tuple(generated_ids[:len(answer_ids)]) == tuple(answer_ids))


def _chunks(answer: str, n: int = 5) -> list[str]:
    words = answer.split()
    if not words:
        return []
    size = -(-len(words) // min(n, len(words)))  # ceil: up to n chunks of whole words
    return [" ".join(words[i:i + size]) for i in range(0, len(words), size)]


def score_substring(output: str, answer: str) -> float:
    chunks = _chunks(answer)
    text = output.lower()
    return sum(chunk.lower() in text for chunk in chunks) / len(chunks) if chunks else 0.0


def score_string_match_all(output: str, references) -> float:
    refs = [references] if isinstance(references, str) else list(references)
    text = output.lower()
    return sum(ref.lower() in text for ref in refs) / len(refs) if refs else 0.0


def score(scorer: str, generated_ids, output_text: str, answer_ids, answer_text: str) -> float:
    """One prompt's score under `scorer` (one of SCORERS)."""
    if scorer == "exact":
        return score_exact(generated_ids, answer_ids)
    if scorer == "substring":
        return score_substring(output_text, answer_text)
    return score_string_match_all(output_text, answer_text)
