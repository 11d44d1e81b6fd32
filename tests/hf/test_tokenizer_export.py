"""A run's sentencepiece tokenizer exported with the model: transformers' AutoTokenizer loads the
tokenizer.json written for it and encodes text to our ids (unicode, whitespace runs, digits),
adds the special tokens our objectives add, and decodes back; config.json names the same
special ids; importing the directory gives the run its tokenizer again. Unigram and BPE models
trained here, and one with sentencepiece's default settings (NFKC, dummy prefix, extra
whitespace removed, a user-defined piece). An encoder-decoder's is refused with a note. And the
other way: an imported Llama directory's tokenizer.model is the run's tokenizer."""

import io
import json
import os

import pytest
import sentencepiece as spm

import hf_models
from hf_models import BERT, LLAMA, NEOX, T5, transformers
from roots_jax import convert as convert_cli
from roots_jax.data import load_tokenizer
from roots_jax.runs import convert

TEXTS = ["def parse(self, text):\n    return [x for x in text.split()]\n",
         "  Leading and trailing  spaces   ", "\t\ttabs\tand\nnew\n\nlines", "",
         "12345 + 678 = 99.5e10", "naïve café — Ünïcödé 中文 日本語 🤖🚀", "a\u00a0b\u200bc",
         "ﬁ ① Ⅻ ＡＢＣ", "x <fn> y<fn>z", "[x] <y> </z>"]


@pytest.fixture(scope="module")
def models(corpus, tokenizer, tmp_path_factory):
  """kind -> a sentencepiece .model file: unigram and BPE as runs train them, and defaults."""
  root = tmp_path_factory.mktemp("spm")
  tokenizer.save(str(root / "bpe.model"))
  lines = [json.loads(line)["text"] for line in open(corpus / "train.jsonl")]
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model,
                                 vocab_size=300, user_defined_symbols=["<fn>"], minloglevel=2)
  (root / "defaults.model").write_bytes(model.getvalue())
  return {"unigram": str(corpus / "spm.model"), "bpe": str(root / "bpe.model"),
          "defaults": str(root / "defaults.model")}


def export(models, kind, hf_config, tmp_path) -> tuple:
  """(our tokenizer, the exported directory, the export's summary)."""
  ours = load_tokenizer(models[kind])
  run = hf_models.make_run(str(tmp_path / "run"), {**hf_config, "vocab_size": ours.vocab_size},
                           overrides=(f"tokenizer.path={models[kind]}",))
  summary = convert.export_hf(run, str(tmp_path / "hf"))
  return ours, str(tmp_path / "hf"), summary


@pytest.mark.parametrize("kind, hf_config", [("unigram", NEOX), ("bpe", BERT),
                                             ("defaults", LLAMA)])
@pytest.mark.extra("hf")
def test_auto_tokenizer_encodes_as_ours(models, kind, hf_config, tmp_path):
  ours, hf_dir, summary = export(models, kind, hf_config, tmp_path)
  assert summary["tokenizer_files"] == ["special_tokens_map.json", "spiece.model",
                                        "tokenizer.json", "tokenizer_config.json"]
  theirs = transformers.AutoTokenizer.from_pretrained(hf_dir)
  for text in TEXTS:
    ids = theirs(text, add_special_tokens=False)["input_ids"]
    assert ids == ours.encode(text), text
    if kind != "defaults":  # byte fallback: every text decodes back exactly
      assert theirs.decode(ids) == ours.decode(ids) == text
  with open(os.path.join(hf_dir, "config.json")) as f:
    config = json.load(f)
  special = [None if i < 0 else i for i in (ours.bos_id, ours.eos_id, ours.pad_id)]  # -1: none
  assert [config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]] == special
  assert [theirs.bos_token_id, theirs.eos_token_id, theirs.pad_token_id] == special

  a, b = ours.encode("def f"), ours.encode("x = 1")
  if hf_config is BERT:  # [CLS] a [SEP] b [SEP], token types as the MLM+NSP objective's
    cls, sep = ours.piece_id("[CLS]"), ours.piece_id("[SEP]")
    pair = theirs("def f", "x = 1")
    assert pair["input_ids"] == [cls, *a, sep, *b, sep]
    assert pair["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert theirs.mask_token_id == ours.piece_id("[MASK]")
  else:  # bos first, as the causal objective starts a document
    assert theirs("def f")["input_ids"] == [ours.bos_id, *a]

  convert.import_hf(hf_dir, str(tmp_path / "back"))
  back = load_tokenizer(str(tmp_path / "back" / "tokenizer"))
  assert back.vocab_size == ours.vocab_size and back.bos_id == ours.bos_id
  assert [back.encode(t) for t in TEXTS] == [ours.encode(t) for t in TEXTS]


@pytest.mark.extra("hf")
def test_special_token_text_is_the_one_difference(models, tmp_path):
  """Hugging Face turns a special token's text into its id; ours spells it out."""
  ours, hf_dir, _ = export(models, "unigram", NEOX, tmp_path)
  theirs = transformers.AutoTokenizer.from_pretrained(hf_dir)
  assert theirs("a</s>", add_special_tokens=False)["input_ids"] == [*ours.encode("a"),
                                                                     ours.eos_id]
  assert ours.eos_id not in ours.encode("a</s>")
  byte = ours.piece_id("<0x41>")  # and, in a unigram model, a byte piece's text is that byte
  assert theirs("<0x41>", add_special_tokens=False)["input_ids"] == [byte] != ours.encode("<0x41>")


@pytest.mark.extra("hf")
def test_pretrained_run_in_transformers(pretrained, tmp_path):
  """A trained GPT exported: AutoTokenizer's padded batch through AutoModelForCausalLM gives our
  logits for the same ids."""
  convert.export_hf(pretrained["decoder"], str(tmp_path / "hf"))
  theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
  model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
  texts = ["def f(x):\n    return x + 1", "naïve 42"]
  batch = theirs(texts, padding=True, return_tensors="np")
  ours = load_tokenizer(os.path.join(pretrained["decoder"], "tokenizer", "spm.model"))
  assert list(batch["input_ids"][0]) == [ours.bos_id, *ours.encode(texts[0])]
  x = dict(tokens=batch["input_ids"].astype("int64"), mask=batch["attention_mask"].astype("int64"))
  model_config, params = hf_models.load_run(pretrained["decoder"])
  diff = hf_models.max_diff(hf_models.ours(model_config, params, x),
                            hf_models.theirs(model, "decoder", x), x)
  assert diff <= 1e-4


def test_word_model_is_refused_with_a_note(models, tmp_path):
  from sentencepiece import sentencepiece_model_pb2  # pylint: disable=g-import-not-at-top
  proto = sentencepiece_model_pb2.ModelProto()
  proto.ParseFromString(open(models["unigram"], "rb").read())
  proto.trainer_spec.model_type = sentencepiece_model_pb2.TrainerSpec.WORD
  (tmp_path / "word.model").write_bytes(proto.SerializeToString())
  summary = export({"word": str(tmp_path / "word.model")}, "word", NEOX, tmp_path)[2]
  assert summary["tokenizer_files"] == []
  assert summary["tokenizer_note"].endswith("word.model is a sentencepiece WORD model; only "
                                            "unigram and BPE models are written as tokenizer.json")
  assert sorted(os.listdir(tmp_path / "hf")) == ["config.json", "model.safetensors"]


def test_encoder_decoder_tokenizer_is_not_exported(models, tmp_path, capsys):
  ours = load_tokenizer(models["unigram"])
  run = hf_models.make_run(str(tmp_path / "run"), {**T5, "vocab_size": ours.vocab_size},
                           overrides=(f"tokenizer.path={models['unigram']}",))
  assert convert_cli.main(["export", run, str(tmp_path / "hf")]) == 0
  out = capsys.readouterr().out
  assert "note: the run's tokenizer is not exported: an encoder-decoder's sentencepiece " \
      "tokenizer is not exported: Hugging Face's T5 tokenizer needs <extra_id_N>" in out
  assert sorted(os.listdir(tmp_path / "hf")) == ["config.json", "model.safetensors"]


def test_imported_llama_tokenizer_model(models, tmp_path):
  """Llama's sentencepiece tokenizer.model goes with the import and gives sentencepiece's own
  ids (no sentinels appended; bos 1, eos 2, no pad as Llama's)."""
  ours, hf_dir, _ = export(models, "defaults", LLAMA, tmp_path)
  for name in os.listdir(hf_dir):
    if name not in ("config.json", "model.safetensors"):
      os.remove(os.path.join(hf_dir, name))
  with open(models["defaults"], "rb") as f:
    (tmp_path / "hf" / "tokenizer.model").write_bytes(f.read())
  with open(os.path.join(hf_dir, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "LlamaTokenizer"}, f)
  summary = convert.import_hf(hf_dir, str(tmp_path / "back"))
  assert summary["tokenizer_files"] == ["tokenizer.model", "tokenizer_config.json"]
  back = load_tokenizer(str(tmp_path / "back" / "tokenizer"))
  assert type(back).__name__ == "LlamaTokenizer"
  assert (back.vocab_size, back.unk_id, back.bos_id, back.eos_id, back.pad_id) == (
      ours.vocab_size, 0, 1, 2, -1)
  assert [back.encode(t) for t in TEXTS] == [ours.encode(t) for t in TEXTS]
