"""gather_aggregate: Gather-and-Aggregate heads (arXiv 2504.18574): every softmax-attention head scored on
segmented prompts as a Gather head (at a segment's last token, its attention on the segment) and an Aggregate
head (at the final query, its attention on the segments' last tokens), the top-scored heads zeroed against as
many random heads on the zoo's retrieval and multiple-choice benchmarks."""

from ..spec import Analysis
from .analysis import ANALYSIS, applies, count, run
from .config import GatherAggregateConfig

__all__ = ["GatherAggregateConfig", "run", "count", "applies", "ANALYSIS", "SPEC"]

SPEC = Analysis(ANALYSIS, GatherAggregateConfig, run, count,
                "Gather-and-Aggregate heads: per-head gather / aggregate attention scores on segmented prompts, "
                "candidates zeroed vs as many random heads on needle, recall and facts (arXiv 2504.18574)",
                applies_to=applies)
