"""roots_jax.pipelines against Hugging Face's: fill-mask on a tiny random BERT with a WordPiece
vocabulary, converted from its transformers checkpoint, gives the transformers pipeline's
guesses (tokens, token strings, sequences; scores at float32 tolerance)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import roots_jax  # pylint: disable=g-import-not-at-top

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "dog", "sat", "on", "a",
         "mat", "ran", "big", "small", "red", "house", "##s", "and", "."]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
  """A random BertForPreTraining (parameters moved off their initial values) with vocab.txt."""
  transformers.logging.set_verbosity_error()
  torch.manual_seed(0)
  config = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=64,
                                   max_position_embeddings=64)
  model = transformers.BertForPreTraining(config)
  with torch.no_grad():
    for p in model.parameters():
      p.add_(0.5 * torch.randn_like(p))
  path = tmp_path_factory.mktemp("bert_hf")
  model.eval().save_pretrained(str(path))
  (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
  return str(path)


def test_fill_mask_matches_transformers(bert_dir, tmp_path, monkeypatch):
  monkeypatch.setenv("ROOTS_JAX_CACHE", str(tmp_path / "cache"))
  theirs = transformers.pipeline("fill-mask", model=bert_dir, tokenizer=bert_dir)
  ours = roots_jax.pipeline("fill-mask", model=bert_dir)
  texts = ["the cat [MASK] on a mat.", "[MASK] dog ran"]
  for text in texts:  # every token, specials and the mask itself included
    got, want = ours(text, top_k=len(VOCAB)), theirs(text, top_k=len(VOCAB))
    assert [(g["token"], g["token_str"], g["sequence"]) for g in got] == [
        (w["token"], w["token_str"], w["sequence"]) for w in want]
    np.testing.assert_allclose([g["score"] for g in got], [w["score"] for w in want],
                               rtol=1e-4, atol=1e-6)
  assert ours(texts, top_k=3) == [ours(t, top_k=3) for t in texts]
  got = ours("the cat [MASK] on a mat.", targets=["dog", "mat", "ran"])
  want = theirs("the cat [MASK] on a mat.", targets=["dog", "mat", "ran"])
  assert [g["token"] for g in got] == [w["token"] for w in want]
  np.testing.assert_allclose([g["score"] for g in got], [w["score"] for w in want], rtol=1e-4)
  # Several masks: a list per mask, the same guesses (Hugging Face's sequences keep [CLS]).
  got, want = ours("the [MASK] sat on the [MASK].", top_k=4), theirs(
      "the [MASK] sat on the [MASK].", top_k=4)
  assert [[g["token"] for g in m] for m in got] == [[w["token"] for w in m] for m in want]
  np.testing.assert_allclose([[g["score"] for g in m] for m in got],
                             [[w["score"] for w in m] for m in want], rtol=1e-4, atol=1e-6)
