"""BERT-base encoder (12 layers, hidden 768, 12 heads) from a transformers config, with
random weights (seeded; no download). Input: one sequence of 128 token ids, any id in the
vocabulary. Needs the `examples` extra (transformers)."""

import torch
from transformers import BertConfig, BertModel

SEQ = 128


def build_model():
    torch.manual_seed(0)
    cfg = BertConfig(attn_implementation="eager")
    return BertModel(cfg, add_pooling_layer=True).eval()


def example_inputs():
    return (torch.zeros(1, SEQ, dtype=torch.long),)


def input_domain():
    return [(0, BertConfig().vocab_size - 1)]
