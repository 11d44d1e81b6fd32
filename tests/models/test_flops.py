"""flops_per_token against a hand count, against the model's own matmul weights and against XLA's
count of the compiled train step."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from roots_jax import config as config_lib
from roots_jax import objectives, tasks
from roots_jax.models import build_model, families, flops_per_token
from roots_jax.runs import assemble, finetune, pretrain
from roots_jax.training import optimizers, partitioning

from tiny_models import tiny_config


def test_hand_count():
  # D=32, N=4, K=2, H=8, F=64, L=2, V=64, T=16.
  attention = 32 * 32 + 32 * 16 + 32 * 16 + 32 * 32  # q, k, v, out
  mlp = 2 * 32 * 64
  params = 2 * (attention + mlp) + 32 * 64  # + LM head
  assert params == 16384
  assert flops_per_token(tiny_config(num_kv_heads=2), 16) == 6 * 16384 + 12 * 2 * 16 * 4 * 8


def test_fine_tuning_hand_count():
  # D=32, N=4, H=8, F=64, L=2, T=16, a pooled head of 3 classes.
  layer = 2 * (4 * 32 * 32 + 2 * 32 * 64) + 4 * 16 * 4 * 8   # forward FLOPs per token
  head = 2 * 32 * 3 / 16                                      # once per 16-token row
  config, tuned = tiny_config(), dict(reads="pooled", outputs=3)
  assert flops_per_token(config, 16, **tuned) == 3 * (2 * layer + head)
  # A frozen backbone runs forward only; its head computes its weights' gradients, not its
  # input's.
  assert flops_per_token(config, 16, trained_layers=0, **tuned) == 2 * layer + 2 * head
  # With the top layer trained, that layer runs backward too, its q, k, v projections passing
  # gradients down to its (pre-LN) norm, and the head passes them to it.
  assert flops_per_token(config, 16, trained_layers=1, **tuned) == 4 * layer + 3 * head


def kernel_sizes(config, *inputs):
  """{path: size} of every matmul weight of the model ("kernel" leaves)."""
  abstract = jax.eval_shape(build_model(config).init, jax.random.key(0), *inputs)
  flat = jax.tree_util.tree_flatten_with_path(nn.meta.unbox(abstract))[0]
  return {jax.tree_util.keystr(path): math.prod(leaf.shape) for path, leaf in flat
          if path[-1].key == "kernel"}


@pytest.mark.parametrize("overrides", [dict(tie_embeddings=False, num_kv_heads=1),
                                       dict(mlp_activation="swiglu", head_dim=16)])
def test_counts_every_kernel(overrides):
  config = tiny_config(**overrides)
  kernels = sum(kernel_sizes(config, jnp.zeros((1, 8), int)).values())
  if config.tie_embeddings:
    kernels += config.vocab_size * config.embed_dim
  attention = 12 * config.num_layers * 8 * config.num_heads * config.head_size
  assert flops_per_token(config, 8) == 6 * kernels + attention


@pytest.mark.parametrize("overrides", [dict(type_vocab_size=2),
                                       dict(tie_embeddings=False, mlp_activation="geglu")])
def test_encoder_counts_every_kernel_and_the_heads(overrides):
  """Per token: every kernel but the NSP head's, which runs once per sequence of T tokens."""
  config = tiny_config(family="encoder", **overrides)
  sizes = kernel_sizes(config, jnp.zeros((1, 8), int))
  per_sequence = sizes.pop("['params']['pooler']['kernel']") + sizes.pop(
      "['params']['nsp_classifier']['kernel']")
  kernels = sum(sizes.values()) + (64 * 32 if config.tie_embeddings else 0)
  attention = 12 * config.num_layers * 8 * config.num_heads * config.head_size
  assert flops_per_token(config, 8) == pytest.approx(6 * kernels + 6 * per_sequence / 8
                                                     + attention)


def test_encoder_decoder_per_encoder_token():
  # D=32, N=4, H=8, F=64, V=64, 2 encoder layers on S=16 tokens, 3 decoder layers on T=8 tokens.
  config = tiny_config(family="encoder_decoder", num_decoder_layers=3, tie_embeddings=False)
  sizes = kernel_sizes(config, jnp.zeros((1, 16), int), jnp.zeros((1, 8), int))
  on_encoder_tokens = sum(v for k, v in sizes.items() if "'encoder'" in k or (
      "cross_attention" in k and ("'key'" in k or "'value'" in k)))
  on_decoder_tokens = sum(sizes.values()) - on_encoder_tokens  # incl. lm_head
  assert on_encoder_tokens == 2 * (4 * 32 * 32 + 2 * 32 * 64) + 3 * 2 * 32 * 32
  attention = 12 * 4 * 8 * (2 * 16 * 16 + 3 * (8 * 8 + 8 * 16))
  expected = (6 * (16 * on_encoder_tokens + 8 * on_decoder_tokens) + attention) / 16
  assert flops_per_token(config, 16, target_len=8) == pytest.approx(expected)
  # Without target_len the decoder is as long as the encoder.
  assert flops_per_token(config, 16) == pytest.approx(flops_per_token(config, 16, 16))


# The count against XLA's: the compiled train step's cost_analysis()["flops"] counts every dot as
# 2 m n k, and about one FLOP per element of every other op (norms, GELU, softmax, the optimizer).
# Those are left out of model FLOPs, so XLA's count must be at least the model's (more would mean
# matmuls counted that the step does not run) and, at width 256 where they add 1-5 %, at most
# 6 % above it. Layers are not scanned here: XLA counts a while loop's body once, not per
# iteration. One device: on a mesh of several, cost_analysis gives one device's share.
WIDTH = ["model.vocab_size=1024", "model.embed_dim=256", "model.num_heads=4",
         "model.mlp_dim=1024", "model.num_layers=2", "model.max_len=128",
         "model.scan_layers=False", "model.dtype=float32", "data.seq_len=64"]
BATCH = 4
# XLA's HLO passes (which decide what runs) as usual, LLVM's code generation cheap: a third faster.
CHEAP_CODEGEN = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _xla_flops(parts, batch_shapes) -> float:
  batch = {k: jax.ShapeDtypeStruct((BATCH, *shape), dtype) for k, (shape, dtype) in
           batch_shapes.items()}
  lowered = parts.train_step.lower(parts.abstract_state, batch)
  return lowered.compile(CHEAP_CODEGEN).cost_analysis()["flops"]


def _one_device(config):
  mesh = jax.make_mesh((1, 1, 1), partitioning.MESH_AXES, devices=jax.devices()[:1],
                       axis_types=(jax.sharding.AxisType.Auto,) * 3)
  return mesh, jax.set_mesh(mesh), nn.logical_axis_rules(partitioning.logical_rules(config))


@pytest.mark.parametrize("spec", ["configs/gpt2.py:tiny", "configs/bert.py:tiny",
                                  "configs/t5.py:tiny"])
def test_pretraining_count_meets_xla(spec):
  """Causal decoder, MLM + NSP encoder, span-corrupting encoder-decoder (decoder rows shorter
  than the encoder's)."""
  config = config_lib.load_config(spec, WIDTH)
  mesh, *contexts = _one_device(config)
  with contexts[0], contexts[1]:
    parts = pretrain.build(config, mesh)
    length, target_len = config.data.seq_len, objectives.target_len(config.data)
    xla = _xla_flops(parts, parts.loss.example(length, target_len))
  model = pretrain.flops_per_token(config, parts.model_config) * BATCH * length
  assert model <= xla <= 1.06 * model, xla / model


@pytest.mark.parametrize("spec,kind,mode,layers", [
    ("configs/bert.py:tiny", "classification", "frozen", 0),     # post-LN, pooler frozen
    ("configs/gpt2.py:tiny", "seq2seq", "frozen", 1),           # a top layer and the LM head
    ("configs/t5.py:tiny", "seq2seq", "full", 0)])              # 64 encoder, 16 decoder tokens
def test_finetuning_count_meets_xla(spec, kind, mode, layers, tmp_path):
  """A frozen backbone runs forward only (its trained top layers and the head backward too); a
  full fine-tune runs everything forward and backward."""
  config = config_lib.finetune_config()
  with config.unlocked():
    config.model.update(dict(config_lib.load_config(spec, WIDTH).model))
    config.task.update(kind=kind, max_len=64, target_len=16)
    config.finetune.update(mode=mode, trainable_layers=layers)
  examples = {"train": [{"text": "a b", "label": label} for label in ("x", "y", "z")]}
  mesh, *contexts = _one_device(config)
  with contexts[0], contexts[1]:
    m = finetune.model_for(config, str(tmp_path), examples)
    tx = optimizers.make_optimizer(config.optimizer, config.train.steps)
    parts = assemble.assemble(config, mesh, m.model_config, m.model, m.loss, m.init_batch, tx,
                              make_plan=lambda params: finetune.training_plan(config, params))
    xla = _xla_flops(parts, {k: (v.shape[1:], v.dtype) for k, v in m.init_batch.items()})
  length = tasks.get(kind).row_length(families.get(config.model.family), 64, 16)
  model = finetune.flops_per_token(config, m.model, length) * BATCH * length
  assert model <= xla <= 1.06 * model, xla / model
