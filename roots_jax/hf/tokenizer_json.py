"""A sentencepiece model (the kind a run trains) as Hugging Face tokenizer files that
`AutoTokenizer.from_pretrained` loads: tokenizer.json (a fast tokenizer, in the JSON format of
the `tokenizers` library, written here as plain JSON so that export needs no extra package),
tokenizer_config.json and special_tokens_map.json, and the model itself as spiece.model, which
roots_jax reads back when the directory is imported (roots_jax.data.hf_tokenizers).

tokenizer.json does what sentencepiece does, following the model's own settings as transformers'
SpmConverter.build_tokenizer_from_spm_proto does: the normalizer applies the precompiled rule
(none for the identity rule runs train), removes extra spaces, adds the dummy prefix and writes
spaces as "▁"; there is no pre-tokenizer, since sentencepiece segments the whole text (a run's
indentation pieces span several spaces), but user-defined pieces are cut out whole; the model is
Unigram with the pieces' scores, or BPE with merges ranked by the merged piece's score; unknown
characters fall back to byte pieces. Control pieces and unk are special added tokens. The
differences: Hugging Face turns a special token's text in the input ("<s>", "[MASK]") into its
id, where sentencepiece spells it out; and a byte piece's own text ("<0x41>") in the input
becomes that byte in a Unigram model's segmentation (tokenizers has no piece types), six pieces
in sentencepiece's.

An encoder-decoder's tokenizer is not written: Hugging Face's T5 tokenizer names its span
sentinels <extra_id_N>, which a sentencepiece model trained here lacks (our span corruption uses
its highest pieces). Nor are WORD and CHAR models, or whitespace kept as a suffix.
"""

import base64
import json
import re

from sentencepiece import sentencepiece_model_pb2

from roots_jax.errors import ConfigError

MODEL_FILE = "spiece.model"
_NORMAL, _UNKNOWN, _CONTROL, _USER = 1, 2, 3, 4  # sentencepiece's piece types
_UNIGRAM, _BPE = 1, 2


def _proto(model: bytes, path: str) -> sentencepiece_model_pb2.ModelProto:
  proto = sentencepiece_model_pb2.ModelProto()
  try:
    proto.ParseFromString(model)
  except Exception as e:  # protobuf's DecodeError has no stable import path
    raise ConfigError(f"{path} is not a sentencepiece model: {e}") from e
  return proto


def hf_files(model: bytes, path: str, family: str,
             max_len: int) -> tuple[dict[str, bytes], dict[str, int | None]]:
  """({file name: contents} of the Hugging Face tokenizer of sentencepiece model `model`, read
  from `path`, for a model of `family`; the bos/eos/pad_token_id of config.json). ConfigError
  saying why where there is none."""
  proto = _proto(model, path)
  spec, norm = proto.trainer_spec, proto.normalizer_spec
  if family == "encoder_decoder":
    raise ConfigError("an encoder-decoder's sentencepiece tokenizer is not exported: Hugging "
                      "Face's T5 tokenizer needs <extra_id_N> span sentinels, which it lacks")
  if spec.model_type not in (_UNIGRAM, _BPE):
    raise ConfigError(f"{path} is a sentencepiece "
                      f"{spec.ModelType.Name(spec.model_type)} model; only unigram and BPE "
                      "models are written as tokenizer.json")
  if spec.treat_whitespace_as_suffix or not norm.escape_whitespaces:
    raise ConfigError(f"{path} keeps whitespace as a suffix or unescaped; tokenizer.json is "
                      "written for sentencepiece's default whitespace handling only")
  pieces = list(proto.pieces)
  named = {"unk_token": spec.unk_id, "bos_token": spec.bos_id, "eos_token": spec.eos_id,
           "pad_token": spec.pad_id}
  if family == "encoder":
    ids = {p.piece: i for i, p in enumerate(pieces)}
    named.update({role: ids.get(piece, -1) for role, piece in
                  (("cls_token", "[CLS]"), ("sep_token", "[SEP]"), ("mask_token", "[MASK]"))})
  named = {role: pieces[i].piece for role, i in named.items() if 0 <= i < len(pieces)}

  tokenizer = {
      "version": "1.0", "truncation": None, "padding": None,
      "added_tokens": [
          {"id": i, "content": p.piece, "single_word": False, "lstrip": False, "rstrip": False,
           "normalized": False, "special": True}
          for i, p in enumerate(pieces) if p.type in (_UNKNOWN, _CONTROL)],
      "normalizer": {"type": "Sequence", "normalizers": _normalizers(norm)},
      "pre_tokenizer": _pre_tokenizer(pieces),
      "post_processor": _post_processor(family, named, pieces),
      "decoder": {"type": "Sequence", "decoders": _decoders(norm, spec.byte_fallback)},
      "model": _model(pieces, spec),
  }
  inputs = ["input_ids", "token_type_ids", "attention_mask"] if family == "encoder" else [
      "input_ids", "attention_mask"]  # BERT's forward takes the token types, decoders' none
  config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len,
            "model_input_names": inputs, "clean_up_tokenization_spaces": False, **named}
  files = {MODEL_FILE: model,
           "tokenizer.json": json.dumps(tokenizer, ensure_ascii=False, indent=1).encode(),
           "tokenizer_config.json": json.dumps(config, ensure_ascii=False, indent=2).encode(),
           "special_tokens_map.json": json.dumps(named, ensure_ascii=False, indent=2).encode()}
  ids = {f"{role}_token_id": i if 0 <= i < len(pieces) else None
         for role, i in (("bos", spec.bos_id), ("eos", spec.eos_id), ("pad", spec.pad_id))}
  return files, ids


def _replace(pattern: str, content: str, regex: bool = False) -> dict:
  return {"type": "Replace", "pattern": {"Regex" if regex else "String": pattern},
          "content": content}


def _normalizers(norm) -> list[dict]:
  """sentencepiece's normalization, in its order."""
  steps = []
  if norm.precompiled_charsmap:
    steps.append({"type": "Precompiled", "precompiled_charsmap":
                  base64.b64encode(norm.precompiled_charsmap).decode()})
  if norm.remove_extra_whitespaces:  # spaces only: newlines and tabs stay
    steps += [_replace(r"\A +| +\z", "", regex=True), _replace(" {2,}", " ", regex=True)]
  steps.append(_replace(" ", "\u2581"))
  if norm.add_dummy_prefix:
    steps.append({"type": "Prepend", "prepend": "\u2581"})
  return steps


def _pre_tokenizer(pieces) -> dict | None:
  """User-defined pieces are always emitted whole, never merged or cut: isolated first."""
  user = sorted((p.piece for p in pieces if p.type == _USER), key=len, reverse=True)
  if not user:
    return None
  return {"type": "Split", "pattern": {"Regex": "|".join(re.escape(u) for u in user)},
          "behavior": "Isolated", "invert": False}


def _post_processor(family: str, named: dict[str, str], pieces) -> dict | None:
  """What our objectives put around a text: [CLS] a [SEP] (b [SEP]) for an encoder, bos first
  for a decoder (as the causal objective starts a document)."""
  if family == "encoder":
    first, end = named.get("cls_token"), named.get("sep_token")
    specials = (first, end)
    single, pair = [first, "$A", end], [first, "$A", end, "$B:1", f"{end}:1"]
  else:
    first = named.get("bos_token")
    specials = (first,)
    single, pair = [first, "$A"], [first, "$A", f"{first}:1", "$B:1"]
  if None in specials:
    return None
  ids = {p.piece: i for i, p in enumerate(pieces)}

  def template(items):
    out = []
    for item in items:
      name, _, type_id = item.partition(":")
      kind = "Sequence" if name.startswith("$") else "SpecialToken"
      out.append({kind: {"id": name.lstrip("$"), "type_id": int(type_id or 0)}})
    return out

  return {"type": "TemplateProcessing", "single": template(single), "pair": template(pair),
          "special_tokens": {t: {"id": t, "ids": [ids[t]], "tokens": [t]} for t in specials}}


def _decoders(norm, byte_fallback: bool) -> list[dict]:
  steps = [_replace("\u2581", " ")]
  if byte_fallback:
    steps.append({"type": "ByteFallback"})
  steps.append({"type": "Fuse"})
  if norm.add_dummy_prefix:
    steps.append({"type": "Strip", "content": " ", "start": 1, "stop": 0})
  return steps


def _model(pieces, spec) -> dict:
  if spec.model_type == _UNIGRAM:
    return {"type": "Unigram", "unk_id": spec.unk_id,
            "vocab": [[p.piece, p.score] for p in pieces],
            "byte_fallback": spec.byte_fallback}
  normal = {p.piece: (-p.score, i) for i, p in enumerate(pieces) if p.type == _NORMAL}
  ranked = sorted((rank, piece[:k], piece[k:]) for piece, rank in normal.items()
                  for k in range(1, len(piece)) if piece[:k] in normal and piece[k:] in normal)
  return {"type": "BPE", "dropout": None, "unk_token": pieces[spec.unk_id].piece,
          "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
          # user-defined pieces (cut out whole by the pre-tokenizer) are never merged
          "byte_fallback": spec.byte_fallback,
          "ignore_merges": any(p.type == _USER for p in pieces),
          "vocab": {p.piece: i for i, p in enumerate(pieces)},
          "merges": [[left, right] for _, left, right in ranked]}
