"""Input data: document sources, the sentencepiece tokenizer, objectives and the grain pipeline."""

from roots_jax.data.pipeline import make_dataset
from roots_jax.data.tokenizer import Tokenizer, load_or_train_tokenizer
