"""The zoo's word-level tokenizer: tokenizer.json through transformers' generic tokenizers backend.

Named in tokenizer_config.json's auto_map only because transformers 5 loads its own class for this model_type
whatever tokenizer_class says; without trust_remote_code it loads PreTrainedTokenizerFast and never imports this file.
"""

from transformers import PreTrainedTokenizerFast


class ZooTokenizer(PreTrainedTokenizerFast):
    """The generic backend, unchanged."""
