"""The sentencepiece tokenizer: loading, and training one on a sample of the corpus.

Models trained here fit code and prose alike: identity normalization and kept whitespace, so
decode(encode(s)) == s exactly; byte fallback, so any character (and "\\n", which sentencepiece
never sees because it trains line by line) is a byte piece instead of <unk>; digits split. Ids
0-3 are pad, unk, bos, eos. [CLS], [SEP] and [MASK] are reserved as control symbols for BERT:
they have ids but are never produced from text, so a literal "[MASK]" in the corpus stays text.
A model trained for span corruption also has T5's sentinels as user-defined pieces on top of the
vocabulary, <extra_id_0> the last id counting down (as T5's): a typed "<extra_id_0>" in a prompt
is that sentinel, and decoding writes it back.
"""

import io
import logging
import os
import time
from typing import Iterable, Iterator, Sequence

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from roots_jax import progress
from roots_jax.data.tokenizers import BaseTokenizer, write_atomically
from roots_jax.errors import DataError

log = logging.getLogger("roots_jax")

SPECIAL_PIECES = ("[CLS]", "[SEP]", "[MASK]")
# Lines longer than this (minified code, data blobs) are skipped in training, not truncated.
_MAX_LINE_BYTES = 1 << 14


def sentencepiece_text(piece: str) -> str:
  """A sentencepiece piece as text: "▁" is a space and a byte piece <0xNN> of ASCII its
  character (other bytes are parts of characters and stay pieces)."""
  if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
    byte = int(piece[3:5], 16)
    return chr(byte) if byte < 0x80 else piece
  return piece.replace("\u2581", " ")


def processor(model_proto: bytes, what: str, fix: str) -> spm.SentencePieceProcessor:
  """A loaded sentencepiece model; DataError "`what` is not a sentencepiece model; `fix`"."""
  try:
    sp = spm.SentencePieceProcessor(model_proto=model_proto)
    valid = sp.vocab_size() > 0  # An empty proto loads as an empty model.
  except RuntimeError:
    valid = False
  if not valid:
    raise DataError(f"{what} is not a sentencepiece model; {fix}")
  return sp


class SentencePieceIds:
  """The ids and pieces of a sentencepiece model `_sp`, shared with Hugging Face's T5 tokenizer
  (hf_tokenizers.T5Tokenizer), which is one with sentinels on top."""

  _sp: spm.SentencePieceProcessor

  @property
  def pad_id(self) -> int:
    return self._sp.pad_id()

  @property
  def unk_id(self) -> int:
    return self._sp.unk_id()

  @property
  def bos_id(self) -> int:
    """-1 when the model has none (e.g. T5's); the causal objective then starts without it."""
    return self._sp.bos_id()

  def encode(self, text: str) -> list[int]:
    return self._sp.encode(text)

  def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """sentencepiece's pieces carry UTF-8 byte spans of the input (through its normalization);
    they become character spans, a word's leading spaces left out (trim_offsets, as HF's fast
    tokenizers), so that an answer cut from them starts at its word. The byte pieces of one
    character but the last span nothing (begin == end), as sentencepiece gives them."""
    # Byte offset -> the character it is part of; the end -> len(text).
    char_at = [i for i, ch in enumerate(text) for _ in ch.encode("utf-8")] + [len(text)]
    ids, offsets = [], []
    for p in self._sp.encode(text, out_type="proto").pieces:
      start = char_at[p.begin]
      end = char_at[p.end - 1] + 1 if p.end > p.begin else start
      if text[start:end].strip():
        start += len(text[start:end]) - len(text[start:end].lstrip())
      ids.append(p.id)
      offsets.append((start, end))
    return ids, offsets

  def piece_text(self, i: int) -> str:
    return sentencepiece_text(self.id_to_piece(i))


class SentencePieceTokenizer(SentencePieceIds, BaseTokenizer):
  """A sentencepiece model and the ids the pipeline and the models rely on."""

  def __init__(self, model_proto: bytes, path: str = ""):
    self.path = path
    self._sp = processor(model_proto, path or "the tokenizer",
                         "fix tokenizer.path or leave it empty to train one")
    if self.eos_id < 0:
      raise DataError(f"tokenizer {path} has no end-of-sequence piece; use one trained with "
                      "eos_id set")

  @classmethod
  def load(cls, path: str) -> "SentencePieceTokenizer":
    """A sentencepiece .model file."""
    try:
      with open(path, "rb") as f:
        proto = f.read()
    except OSError as e:
      raise DataError(f"cannot read tokenizer {path}: {e.strerror or e}; fix tokenizer.path "
                      "or leave it empty to train one") from e
    return cls(proto, path)

  @property
  def vocab_size(self) -> int:
    return self._sp.vocab_size()

  @property
  def eos_id(self) -> int:
    return self._sp.eos_id()

  def piece_id(self, piece: str) -> int:
    """The id of a reserved piece such as "[MASK]"."""
    i = self._sp.piece_to_id(piece)
    if i == self.unk_id and piece != self._sp.id_to_piece(i):
      raise DataError(f"tokenizer {self.path} has no piece {piece!r}; train a new one")
    return i

  def id_to_piece(self, i: int) -> str:
    return self._sp.id_to_piece(i)

  def is_special(self, i: int) -> bool:
    """Control pieces (pad, bos, eos, [CLS], [SEP], [MASK]) and unk: never text, never masked."""
    return self._sp.is_control(i) or self._sp.is_unknown(i)

  def decode(self, ids: Sequence[int]) -> str:
    return self._sp.decode([int(i) for i in ids])

  def save(self, path: str) -> None:
    write_atomically(path, self._sp.serialized_model_proto())

  def contents(self) -> dict[str, bytes]:
    return {"spm.model": self._sp.serialized_model_proto()}

  def __getstate__(self):  # grain workers receive the model itself, not a path.
    return {"proto": self._sp.serialized_model_proto(), "path": self.path}

  def __setstate__(self, state):
    self.__init__(state["proto"], state["path"])


def _lines(documents: Iterable[str | tuple[str, str]], max_bytes: int) -> Iterator[str]:
  """The documents' (or both sides of (input, target) pairs') non-empty lines, up to
  `max_bytes` of UTF-8 in all."""
  total = 0
  for doc in documents:
    for line in (l for text in ((doc,) if isinstance(doc, str) else doc)
                 for l in text.splitlines()):
      size = len(line.encode())
      if not line.strip() or size > _MAX_LINE_BYTES:
        continue
      total += size
      if total > max_bytes:
        return
      yield line


def _read(documents: Iterable[str | tuple[str, str]], max_bytes: int) -> Iterator[str]:
  """_lines, with the progress of the reading shown and its end logged."""
  lines = 0
  with progress.Progress("tokenizer: reading text", max_bytes, unit="B",
                         unit_scale=True) as reading:
    for line in _lines(documents, max_bytes):
      reading.update(len(line.encode()))
      lines += 1
      yield line
  log.info("tokenizer: read %s lines (%.1f MB) in %.1f s; computing the pieces", f"{lines:,}",
           reading.n / 1e6, reading.elapsed())


def train_tokenizer(documents: Iterable[str], *, vocab_size: int, model_type: str,
                    max_bytes: int, sentinels: int = 0) -> bytes:
  """Trains on the first `max_bytes` of `documents` and returns the serialized model; its last
  `sentinels` of the `vocab_size` ids are the sentinels <extra_id_N>."""
  began = time.perf_counter()
  log.info("tokenizer: training a %s model of %d pieces on up to %.1f MB of text", model_type,
           vocab_size, max_bytes / 1e6)
  model = io.BytesIO()
  try:
    spm.SentencePieceTrainer.train(
        sentence_iterator=_read(documents, max_bytes),
        model_writer=model,
        vocab_size=vocab_size - sentinels,
        model_type=model_type,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,          # keeps line starts and decode exact
        allow_whitespace_only_pieces=True,  # indentation runs become single pieces
        split_digits=True,
        pad_id=0, unk_id=1, bos_id=2, eos_id=3,
        control_symbols=list(SPECIAL_PIECES),
        max_sentence_length=_MAX_LINE_BYTES,
        input_sentence_size=0,           # the sample is already capped by max_bytes
        # Unigram EM passes per pruning round (default 2): half the training time, and the
        # same compression on held-out stdlib modules (3.18 bytes/token at 8k pieces).
        num_sub_iterations=1,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
  except RuntimeError as e:
    raise DataError(f"training the tokenizer failed: {str(e).strip().rstrip('.')}. With little text, lower "
                    "the vocabulary size (model.vocab_size) or give more data") from e
  log.info("tokenizer: trained in %.1f s", time.perf_counter() - began)
  return _with_sentinels(model.getvalue(), sentinels)


def _with_sentinels(model_proto: bytes, count: int) -> bytes:
  """The model with `count` sentinels appended, <extra_id_0> last: user-defined pieces, which
  sentencepiece cuts out of text before anything else and decodes to their text."""
  if not count:
    return model_proto
  model = sentencepiece_model_pb2.ModelProto.FromString(model_proto)
  for i in reversed(range(count)):
    model.pieces.add(piece=f"<extra_id_{i}>", score=0.0,
                     type=sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED)
  return model.SerializeToString()
