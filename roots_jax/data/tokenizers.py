"""The tokenizer interface the pipeline, the objectives and the runs rely on. Its kinds: the
sentencepiece tokenizer trained here (roots_jax.data.sentencepiece) and Hugging Face tokenizer
files (roots_jax.data.hf_tokenizers: GPT-2, BERT, T5); `roots_jax.data.load_tokenizer(path)`
loads either.
"""

import os
import tempfile
from typing import Sequence

from roots_jax.errors import DataError


class BaseTokenizer:
  """What the pipeline, the objectives and the drivers use of a tokenizer.

  Ids are 0..vocab_size-1; pad_id, unk_id and bos_id are -1 where a tokenizer has none (GPT-2
  has no unk and pads with eos, as HF; BERT and T5 have no bos); eos_id always exists (the
  objectives end sequences with it).
  Special ids (is_special: pad, bos, eos, [CLS], [SEP], [MASK], sentinels, unk) are never made
  from text, except unk for what the vocabulary cannot spell, and never masked; decode writes
  no text for them (sentencepiece's " ⁇ " for unk aside). The sentinels of a sentencepiece model
  trained for span corruption are pieces of text instead: a typed <extra_id_0> is one, as in T5.
  Subclasses pickle as their files' contents: grain workers get the tokenizer itself, not a path.
  """

  path: str

  @property
  def vocab_size(self) -> int:
    raise NotImplementedError

  @property
  def pad_id(self) -> int:
    raise NotImplementedError

  @property
  def unk_id(self) -> int:
    raise NotImplementedError

  @property
  def bos_id(self) -> int:
    raise NotImplementedError

  @property
  def eos_id(self) -> int:
    raise NotImplementedError

  def piece_id(self, piece: str) -> int:
    """The id of a piece such as "[MASK]"; DataError when the tokenizer has none."""
    raise NotImplementedError

  def id_to_piece(self, i: int) -> str:
    raise NotImplementedError

  def is_special(self, i: int) -> bool:
    raise NotImplementedError

  def encode(self, text: str) -> list[int]:
    raise NotImplementedError

  def decode(self, ids: Sequence[int]) -> str:
    raise NotImplementedError

  def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """encode(text) and each id's (start, end) character span in `text`, as a Hugging Face fast
    tokenizer's offset_mapping: what extractive question answering cuts answers with."""
    raise DataError(f"tokenizer {self.path} gives no character offsets; extractive question "
                    "answering needs a sentencepiece or BERT WordPiece tokenizer")

  def save(self, path: str) -> None:
    """Writes what `Tokenizer.load(path)` reads back (a file or a directory), atomically."""
    raise NotImplementedError

  def contents(self) -> dict[str, bytes]:
    """The files that define it, by name: equal contents give equal ids."""
    raise NotImplementedError

  def piece_text(self, i: int) -> str:
    """Piece i as it reads in running text, a word-starting piece with its leading space (what
    sentencepiece writes "▁", GPT-2 "Ġ"): MLM cuts sentences and whole words with it."""
    return self.id_to_piece(i)

  def has_piece(self, piece: str) -> bool:
    try:
      self.piece_id(piece)
    except DataError:
      return False
    return True

  def sentinel_id(self, i: int) -> int:
    """Span corruption's i-th sentinel: the piece <extra_id_i> where the tokenizer has it (T5's),
    else vocab_size - 1 - i, as T5 counts down from the top of the vocabulary."""
    piece = f"<extra_id_{i}>"
    return self.piece_id(piece) if self.has_piece(piece) else self.vocab_size - 1 - i

  def fits_model_vocab(self, vocab_size: int) -> bool:
    """Whether a model with `vocab_size` embeddings fits this tokenizer: exactly, as one trained
    here; a Hugging Face tokenizer also fits a padded one (T5: 32100 pieces, 32128 rows)."""
    return vocab_size == self.vocab_size


def check_vocab_size(tokenizer: BaseTokenizer, vocab_size: int, fix: str) -> None:
  """DataError (ending in `fix`) unless a model of `vocab_size` embeddings fits `tokenizer`."""
  if not tokenizer.fits_model_vocab(vocab_size):
    raise DataError(f"tokenizer {tokenizer.path} has {tokenizer.vocab_size} pieces but "
                    f"model.vocab_size is {vocab_size}; {fix}")


def write_atomically(path: str, data: bytes) -> None:
  """Readers never see a partial file: write a temporary file, then rename it into place."""
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise
