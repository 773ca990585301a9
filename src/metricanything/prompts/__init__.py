"""Sparse Metric Prompts: training sampler, representation, named evaluation patterns, encoding, preparation."""

from metricanything.prompts.encoding import PROMPT_CHANNELS, EncodedPrompt, encode_prompt
from metricanything.prompts.patterns import MODIFIERS, PATTERNS, PatternSpec, make_prompt, parse_pattern
from metricanything.prompts.prep import PrepConfig, PrepResult, PriorFn, prepare_arrays, prepare_sample
from metricanything.prompts.prompt import Prompt, read_prompt_file, stack_prompts
from metricanything.prompts.sampler import (
    PromptSamplerConfig,
    draw_prompt_counts,
    sample_prompt_masks,
    sample_prompts,
)

__all__ = [
    "PROMPT_CHANNELS",
    "EncodedPrompt",
    "encode_prompt",
    "Prompt",
    "read_prompt_file",
    "stack_prompts",
    "PromptSamplerConfig",
    "draw_prompt_counts",
    "sample_prompt_masks",
    "sample_prompts",
    "PATTERNS",
    "MODIFIERS",
    "PatternSpec",
    "make_prompt",
    "parse_pattern",
    "PrepConfig",
    "PrepResult",
    "PriorFn",
    "prepare_arrays",
    "prepare_sample",
]
