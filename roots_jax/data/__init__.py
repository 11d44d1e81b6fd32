"""Input data: document sources, tokenizers, the grain pipeline, fine-tuning examples and rows."""

import os

from roots_jax.data import hf_tokenizers, sentencepiece
from roots_jax.data.tokenizers import BaseTokenizer


def load_tokenizer(path: str) -> BaseTokenizer:
  """A sentencepiece .model file, or a directory of Hugging Face tokenizer files."""
  if os.path.isdir(path):
    return hf_tokenizers.load(path)
  return sentencepiece.SentencePieceTokenizer.load(path)
