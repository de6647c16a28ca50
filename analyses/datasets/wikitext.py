"""WikiText-2 (wikitext, wikitext-2-raw-v1: one `text` line per record), validation split, as perplexity
windows of `doc_tokens` tokens (Study A exp. 5: 2,048); the windows after the scored ones are held out as
reference text for mean/resample ablation."""

from __future__ import annotations

from mechhybrid.errors import MechHybridError

from ..tasks import LMTask
from .choice import encode
from .fields import text
from .files import files_version, find_split, read_records

__all__ = ["read_wikitext", "N_REF_WINDOWS"]

N_REF_WINDOWS = 8


def read_wikitext(path, tokenizer, limit, seed, doc_tokens: int = 2048):
    """(LMTask, reference windows). Windows are consecutive, so `limit` takes the first ones (no sample:
    the text is one stream); seed is unused."""
    files = find_split(path, ("validation",), ("2-raw",), ident="wikitext")
    records = read_records(files)
    if not records:
        raise MechHybridError(f"wikitext: no records in {files[0]}")
    ids = encode(tokenizer, "".join(text(r, "text", "wikitext") for r in records), True)
    n = len(ids) // doc_tokens
    if n == 0:
        raise MechHybridError(f"wikitext: the text has {len(ids)} tokens, fewer than one window of {doc_tokens}")
    windows = [ids[i * doc_tokens:(i + 1) * doc_tokens] for i in range(n)]
    scored = windows[:limit] if len(windows) > 1 else windows
    refs = windows[len(scored):len(scored) + N_REF_WINDOWS] or None
    return LMTask("wikitext", files_version("wikitext", "validation", files), tuple(scored)), refs
