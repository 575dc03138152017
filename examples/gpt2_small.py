"""GPT-2 small decoder (12 layers, hidden 768) from a transformers config, with random
weights (seeded; no download). Input: one sequence of 128 token ids, any id in the
vocabulary. ``use_cache=False`` keeps the output a tensor (no KV cache object)."""

import torch
from transformers import GPT2Config, GPT2Model

SEQ = 128


def build_model():
    torch.manual_seed(0)
    cfg = GPT2Config(use_cache=False, attn_implementation="eager")
    return GPT2Model(cfg).eval()


def example_inputs():
    return (torch.zeros(1, SEQ, dtype=torch.long),)


def input_domain():
    return [(0, GPT2Config().vocab_size - 1)]
