"""Sparse Metric Prompts: training sampler, representation, named evaluation patterns, encoding, preparation."""

from metricanything.prompts.encoding import PROMPT_CHANNELS, EncodedPrompt, encode_prompt

__all__ = ["PROMPT_CHANNELS", "EncodedPrompt", "encode_prompt"]
