"""Generation from a converted checkpoint equals transformers' `generate`: greedy and beam search
(scores too), on left-padded prompts of different lengths, for GPT-2, Llama and T5."""

import jax
import numpy as np
import pytest

import hf_models
from hf_models import torch, transformers
from roots_jax import decoding, models
from roots_jax.runs import convert

pytestmark = pytest.mark.extra("hf")

EOS, PAD, VOCAB = 2, 0, 12  # a small vocabulary, so eos comes up and beams finish early
PROMPTS = [[5, 6, 7, 8, 9], [4, 10], [11, 3, 7]]
CONFIGS = {
    "gpt2": ("GPT2LMHeadModel", {**hf_models.GPT2, "vocab_size": VOCAB, "bos_token_id": 1,
                                 "eos_token_id": EOS, "pad_token_id": PAD}),
    "llama": ("LlamaForCausalLM", {**hf_models.LLAMA, "vocab_size": VOCAB, "bos_token_id": 1,
                                   "eos_token_id": EOS, "pad_token_id": PAD}),
    "t5": ("T5ForConditionalGeneration", {**hf_models.T5_V11, "vocab_size": VOCAB,
                                          "eos_token_id": EOS, "pad_token_id": PAD,
                                          "decoder_start_token_id": 0}),
}
SETTINGS = {
    "greedy": dict(max_new_tokens=8),
    "beam": dict(max_new_tokens=8, num_beams=3, num_return_sequences=3, length_penalty=0.7,
                 early_stopping=False),
    "beam-early": dict(max_new_tokens=8, num_beams=4, num_return_sequences=2,
                       early_stopping=True, repetition_penalty=1.4),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def converted(request, tmp_path_factory):
  """(name, transformers model, our model, our params) of one random tiny checkpoint."""
  name = request.param
  architecture, hf_config = CONFIGS[name]
  torch.manual_seed(0)
  config = transformers.AutoConfig.for_model(
      **{k: v for k, v in hf_config.items() if k != "architectures"})
  hf = getattr(transformers, architecture)(config)
  with torch.no_grad():
    for p in hf.parameters():
      p.add_(0.3 * torch.randn_like(p))  # peaked distributions: fewer near-ties between beams
  hf.eval()
  root = tmp_path_factory.mktemp(name)
  hf.save_pretrained(root / "hf")
  hf_models.add_tokenizer_file(str(root / "hf"))
  convert.import_hf(str(root / "hf"), str(root / "run"))
  model_config, params = hf_models.load_run(str(root / "run"))
  return name, hf, models.build_model(model_config), params


def _left_padded(width):
  """Prompts [B, W] right-aligned, and their attention mask (1 real, 0 padding)."""
  tokens = np.full((len(PROMPTS), width), PAD, np.int64)
  for i, p in enumerate(PROMPTS):
    tokens[i, width - len(p):] = p
  lengths = np.array([len(p) for p in PROMPTS])[:, None]
  return tokens, (np.arange(width)[None] >= width - lengths).astype(np.int64)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_generate_matches_transformers(converted, setting):
  name, hf, model, params = converted
  options = SETTINGS[setting]
  family = "encoder_decoder" if name == "t5" else "decoder"
  tokens, mask = _left_padded(6)
  prompts = ({"inputs": tokens, "segment_ids": mask} if family == "decoder" else
             {"encoder_inputs": tokens, "encoder_segment_ids": mask})
  config = decoding.GenerationConfig(**options)
  ours = jax.device_get(jax.jit(lambda p, b: decoding.generate(
      model, p, b, family=family, config=config, eos_id=EOS, pad_id=PAD))(
          params, jax.tree.map(lambda x: x.astype(np.int32), prompts)))

  with torch.no_grad():
    out = hf.generate(input_ids=torch.from_numpy(tokens), attention_mask=torch.from_numpy(mask),
                      do_sample=False, eos_token_id=EOS, pad_token_id=PAD,
                      output_scores=True, return_dict_in_generate=True, **options)
  sequences = out.sequences.numpy()[:, tokens.shape[1] if family == "decoder" else 1:]
  rows = options.get("num_return_sequences", 1)
  theirs = sequences.reshape(len(PROMPTS), rows, -1)
  for b in range(len(PROMPTS)):
    for r in range(rows):
      n = int(ours.lengths[b, r])
      assert list(ours.tokens[b, r, :n]) == list(theirs[b, r, :n]), (b, r)
      assert np.isin(theirs[b, r, n:], (PAD, EOS)).all()  # HF ended there too
  if "num_beams" in options:
    np.testing.assert_allclose(ours.scores, out.sequences_scores.numpy().reshape(-1, rows),
                               atol=1e-4)
