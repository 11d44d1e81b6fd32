"""What differs between the model families, each owned by one object: its stack, the inputs it
reads (a text's batch row, a prompt's keys), the features a fine-tuning head reads, its
next-token logits for generation, its FLOPs and which of its layers a frozen fine-tune trains.

  family = families.get(config.family)        # DECODER, ENCODER or ENCODER_DECODER
  model = family.build(config)
  hidden = family.features(backbone, batch, reads="pooled", pooling="last", deterministic=True)

Fine-tuning heads read `reads`: "pooled" ([B, D], one vector per sequence: classification,
regression), "tokens" ([B, T, D] per input token: tagging) or "lm" ([B, T, D] the hidden states
an LM head reads: seq2seq). The Hugging Face rule tables of a family are its modules in
roots_jax.hf (`hf.architectures.for_model`).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from roots_jax.errors import ConfigError
from roots_jax.models.config import ModelConfig
from roots_jax.models.decoder import Decoder
from roots_jax.models.encoder import Encoder
from roots_jax.models.encoder_decoder import EncoderDecoder

Spec = dict[str, tuple[tuple[int, ...], type]]


def mean_tokens(x: jax.Array, segment_ids: jax.Array) -> jax.Array:
  """x [B, T, D] -> [B, D]: the mean over real (segment > 0) positions."""
  real = (segment_ids > 0).astype(x.dtype)[..., None]                  # [B, T, 1]
  return (x * real).sum(1) / jnp.maximum(real.sum(1), 1)


def last_token(x: jax.Array, segment_ids: jax.Array) -> jax.Array:
  """x [B, T, D] -> [B, D] at each row's last real (segment > 0) position; rows are right-padded."""
  index = jnp.maximum(jnp.sum(segment_ids > 0, axis=1) - 1, 0)  # [B]
  return jnp.take_along_axis(x, index[:, None, None], axis=1)[:, 0]


def sequence_row(ids, length: int, prefix: str = "") -> dict[str, np.ndarray]:
  """`ids` right-padded to `length` as {prefix}inputs, with segment ids (1 real, 0 padding) and
  positions (0 on padding)."""
  n = len(ids)
  inputs = np.zeros(length, np.int32)
  inputs[:n] = ids
  real = np.arange(length) < n
  return {f"{prefix}inputs": inputs, f"{prefix}segment_ids": real.astype(np.int32),
          f"{prefix}positions": np.where(real, np.arange(length), 0).astype(np.int32)}


def sequence_spec(length: int, prefix: str = "") -> Spec:
  return {f"{prefix}{k}": ((length,), np.int32) for k in ("inputs", "segment_ids", "positions")}


class Matmul(NamedTuple):
  """Forward FLOPs of one example in matmuls of one kind, and which gradients its backward pass
  computes: each one more matmul of the forward's size."""
  forward: float
  trains: bool = True   # its weights get gradients (False for attention's QK^T and PV)
  passes: bool = True   # gradients flow through it to its activation operands
  operands: int = 1     # activation operands: 1 (activations x weights), 2 (QK^T, PV)


def step_flops(matmuls: list[Matmul]) -> float:
  """Model FLOPs of one train step on one example, as counted for MFU (PaLM, Chowdhery et al.
  2022, appendix B; MaxText): the matmuls only (2 m n k each; embedding lookups, norms, softmax
  and other elementwise work are left out), forward plus one matmul per gradient computed;
  remat's recomputation is not counted, nor the causal mask's skipped half subtracted.

  Everything trained: 3x forward (6 FLOPs per weight and token, 12 L T N H of attention).
  A frozen part runs forward only; a frozen part that gradients pass through (LoRA's base
  weights) costs 2x; a model run forward alone (a distillation teacher) is
  trains=passes=False.
  """
  return sum(m.forward * (1 + m.trains + m.passes * m.operands) for m in matmuls)


class _Layer(NamedTuple):
  """Forward FLOPs of one layer on one example."""
  inputs: float          # the q, k, v projections of the layer's input
  attention: float       # QK^T and PV, of self- and cross-attention
  rest: float            # output projections, MLP, cross-attention queries
  encoded: float = 0.0   # cross-attention keys and values of the encoder output


def _layer(config: ModelConfig, length: int, encoded_length: int = 0) -> _Layer:
  """A layer on `length` tokens, cross-attending to `encoded_length` encoder tokens (if any).
  Attention counts every query-key pair, the causal mask's skipped half too."""
  d, n, k, h = config.embed_dim, config.num_heads, config.kv_heads, config.head_size
  q_out, k_v = _projections(config)
  mlp = _layer_params(config) - q_out - k_v
  layer = _Layer(inputs=2.0 * length * d * (n + 2 * k) * h,
                 attention=4.0 * length * length * n * h,
                 rest=2.0 * length * (d * n * h + mlp))
  if not encoded_length:
    return layer
  return layer._replace(attention=layer.attention + 4.0 * length * encoded_length * n * h,
                        rest=layer.rest + 2.0 * length * q_out,
                        encoded=2.0 * encoded_length * k_v)


def _stack(config: ModelConfig, layer: _Layer, layers: int, trained: int, *,
           fed: bool) -> list[Matmul]:
  """A stack's matmuls with its top `trained` layers trained; `fed`: what lies below the stack
  (its embeddings, the encoder a decoder reads) trains too. The lowest trained layer's input
  projections pass gradients only to what trains below them: the stack's input when fed, or
  the layer's own norm before them (pre-LN)."""
  frozen = layers - trained
  pre_norm = config.norm_placement == "pre"
  return [Matmul(frozen * sum(layer), trains=False, passes=False),
          Matmul(trained * layer.rest),
          Matmul(trained * layer.attention, trains=False, operands=2),
          Matmul(trained * layer.encoded, passes=fed),
          Matmul((trained - 1) * layer.inputs if trained else 0.0),
          Matmul(layer.inputs if trained else 0.0, passes=fed or pre_norm)]


def _task_head(config: ModelConfig, length: int, reads: str, outputs: int) -> float:
  """Forward FLOPs of a fine-tuning head on one example: once on the pooled vector, else on
  every token; an "lm" head has the vocabulary."""
  width = 2.0 * config.embed_dim * (config.vocab_size if reads == "lm" else outputs)
  return width if reads == "pooled" else width * length


def _projections(config: ModelConfig) -> tuple[int, int]:
  """Weights of the query + output and of the key + value projections of one attention."""
  d, n, k, h = config.embed_dim, config.num_heads, config.kv_heads, config.head_size
  return 2 * d * n * h, 2 * d * k * h


def _layer_params(config: ModelConfig) -> int:
  """Matmul weights of one block: attention and MLP."""
  q_out, k_v = _projections(config)
  gates = 3 if config.mlp_activation in ("swiglu", "geglu") else 2
  return q_out + k_v + gates * config.embed_dim * config.mlp_dim


class Family:
  """The decoder-only family's behaviour; the other two override what differs."""
  name = "decoder"
  stack: type[nn.Module] = Decoder
  generates = True             # has an LM head that continues a prompt or an input
  has_encoder = False          # reads its input in a separate encoder (encoder-decoder)
  default_pooling = "last"     # what a "pooled" head reads unless finetune.pooling says
  embed_pooling = "last"       # the feature vector of a text (LanguageModel.embed's default)
  frame = ("bos", "eos")       # special-token roles around a text (data.task_rows.specials)
  prompt_prefix = ""           # the batch keys generation's prompts go in
  pretraining_objective = "causal"  # what its Hugging Face checkpoints were trained on

  def build(self, config: ModelConfig) -> nn.Module:
    return self.stack(config)

  def init_args(self, tokens: jax.Array) -> tuple:
    """The positional inputs of `model.init` for a batch of `tokens` [B, T]."""
    return (tokens,)

  def check_pooling(self, pooling: str) -> None:
    """ConfigError unless `pooling` ("" = the default) fits this family's pooled features."""
    fits = (self.default_pooling, "mean")
    if pooling and pooling not in fits:
      raise ConfigError(f"finetune.pooling={pooling} does not fit a {self.name} model: use "
                        f"{' or '.join(fits)}")

  # The inputs: a text's row, and the features a head reads from it.

  def text_spec(self, length: int, reads: str) -> Spec:
    """The keys and shapes of `text_row`."""
    return sequence_spec(length)

  def text_row(self, ids: list[int], length: int, reads: str,
               second_start: int | None = None) -> dict[str, np.ndarray]:
    """One framed text's ids as a right-padded row for a head that `reads`; `second_start`
    is where the second text of a pair begins (BERT's token type 1), None for one text."""
    del reads, second_start
    return sequence_row(ids, length)

  def features(self, backbone: nn.Module, batch: dict, *, reads: str, pooling: str,
               deterministic: bool) -> jax.Array:
    """What a head reads from `text_row`s: [B, D] for "pooled", else [B, T, D]."""
    hidden = backbone(batch["inputs"], positions=batch["positions"],
                      segment_ids=batch["segment_ids"], deterministic=deterministic,
                      features=True)  # [B, T, D]
    if reads != "pooled":
      return hidden
    pool = last_token if (pooling or self.default_pooling) == "last" else mean_tokens
    return pool(hidden, batch["segment_ids"])

  def lm_logits(self, module: nn.Module, tokens: jax.Array, *, positions: jax.Array,
                segment_ids: jax.Array, encoded: jax.Array | None = None,
                encoder_segment_ids: jax.Array | None = None, decode: bool = False,
                features: bool = False) -> jax.Array:
    """The stack's next-token logits [B, T, V] over decoder `tokens` (with `features`, the
    hidden states [B, T, D] the LM head reads); `decode` runs on the KV cache."""
    del encoded, encoder_segment_ids
    return module(tokens, positions=positions, segment_ids=segment_ids, decode=decode,
                  features=features)

  def output_kernel(self, config: ModelConfig, params) -> jax.Array:
    """The [D, V] matrix the pretrained LM head applies to the final hidden states: the untied
    `lm_head`, or the token embedding transposed."""
    if not config.tie_embeddings:
      return params["lm_head"]["kernel"]
    return params["token_embed"]["embedding"].T

  def head_stack(self, config: ModelConfig, reads: str) -> tuple[tuple[str, ...], int, tuple]:
    """(path of the stack a head reads under the backbone, its number of layers, the names of
    its parameters between the last layer and the head besides final_norm)."""
    del reads
    return (), config.num_layers, ()

  # FLOPs: the numerator of MFU.

  def flops_per_token(self, config: ModelConfig, seq_len: int, target_len: int | None = None,
                      **head) -> float:
    """Training FLOPs of one step per token of a `seq_len`-token row (an encoder-decoder's
    encoder tokens, what the train loop counts): step_flops of `matmuls`, over seq_len."""
    return step_flops(self.matmuls(config, seq_len, target_len, **head)) / seq_len

  def matmuls(self, config: ModelConfig, seq_len: int, target_len: int | None = None, *,
              reads: str = "", outputs: int = 0, pooling: str = "",
              trained_layers: int | None = None) -> list[Matmul]:
    """The matmuls of one train step on one example. reads="": the pretraining model with its
    objective's outputs, everything trained. Else a fine-tuning head that `reads` (with
    `outputs` classes; an "lm" head has the vocabulary) on the features alone; everything trains
    (trained_layers None: full fine-tuning) or only the head and the top `trained_layers`
    layers of the stack it reads with what lies between them and the head (a frozen backbone,
    runs.finetune.training_plan); encoder-decoder decoders run on target_len tokens."""
    full = trained_layers is None
    parts = []
    for layers, layer, read in self._stacks(config, seq_len, target_len, reads, pooling):
      trained = layers if full else min(trained_layers, layers) if read else 0
      parts += _stack(config, layer, layers, trained, fed=full)
    tuned = full or trained_layers > 0  # gradients flow below the head
    between, head = self._outputs(config, seq_len, target_len, reads, outputs, pooling)
    return parts + [Matmul(between, trains=tuned, passes=tuned),
                    Matmul(head, passes=tuned)]

  def _stacks(self, config: ModelConfig, seq_len: int, target_len: int | None, reads: str,
              pooling: str) -> list[tuple[int, _Layer, bool]]:
    """(layers, one layer's forward, whether a head reads it (head_stack)) of each stack run, in
    the order the data passes them."""
    del target_len, reads, pooling
    return [(config.num_layers, _layer(config, seq_len), True)]

  def _outputs(self, config: ModelConfig, seq_len: int, target_len: int | None, reads: str,
               outputs: int, pooling: str) -> tuple[float, float]:
    """Forward FLOPs of one example (between the stack and the head, the head): the LM head on
    every token for pretraining, else the task head."""
    del target_len, pooling
    if not reads:
      return 0.0, 2.0 * seq_len * config.embed_dim * config.vocab_size
    return 0.0, _task_head(config, seq_len, reads, outputs)


class EncoderFamily(Family):
  """BERT: bidirectional, token types for sentence pairs, pooled [CLS] features."""
  name = "encoder"
  stack = Encoder
  generates = False
  default_pooling = "first"
  embed_pooling = "first"
  frame = ("cls", "sep")
  pretraining_objective = "mlm_nsp"

  def text_spec(self, length: int, reads: str) -> Spec:
    return {**sequence_spec(length), "token_types": ((length,), np.int32)}

  def text_row(self, ids, length, reads, second_start=None):
    row = sequence_row(ids, length)
    row["token_types"] = np.zeros(length, np.int32)
    if second_start is not None:  # b [SEP]: type 1
      row["token_types"][second_start:len(ids)] = 1
    return row

  def features(self, backbone, batch, *, reads, pooling, deterministic):
    hidden, pooler = backbone(batch["inputs"], token_types=batch["token_types"],
                              positions=batch["positions"], segment_ids=batch["segment_ids"],
                              deterministic=deterministic, features=True)
    if reads != "pooled":
      return hidden
    return pooler if (pooling or self.default_pooling) == "first" else mean_tokens(
        hidden, batch["segment_ids"])

  def lm_logits(self, module, tokens, **kwargs):
    raise ConfigError("an encoder-only (BERT) model does not generate text")

  def head_stack(self, config, reads):
    return (), config.num_layers, ("pooler",)

  def _outputs(self, config, seq_len, target_len, reads, outputs, pooling):
    """Pretraining: the MLM head (transform D x D, output V x D) on every token, the NSP pooler
    and classifier once. A pooled head on "first" reads the pooler, which lies between the
    stack and the head (a frozen backbone trains it with its top layers)."""
    d = config.embed_dim
    if not reads:
      return 0.0, 2.0 * (seq_len * d * (d + config.vocab_size) + d * d + 2 * d)
    first = reads == "pooled" and (pooling or self.default_pooling) == "first"
    return 2.0 * d * d * first, _task_head(config, seq_len, reads, outputs)


class EncoderDecoderFamily(Family):
  """Transformer / T5: the input in the encoder, the output (or a pooled head's shifted input)
  in the decoder."""
  name = "encoder_decoder"
  stack = EncoderDecoder
  has_encoder = True
  embed_pooling = "mean"       # of the encoder states
  frame = ("", "eos")
  prompt_prefix = "encoder_"
  pretraining_objective = "span_corruption"

  def init_args(self, tokens):
    return (tokens, tokens)

  def text_spec(self, length, reads):
    spec = sequence_spec(length, "encoder_")
    return {**spec, **sequence_spec(length, "decoder_")} if reads == "pooled" else spec

  def text_row(self, ids, length, reads, second_start=None):
    """The text in the encoder; a pooled head reads the decoder over the text shifted right
    (start id 0), as BART's classification head."""
    row = sequence_row(ids, length, "encoder_")
    if reads == "pooled":
      row.update(sequence_row([0] + ids[:-1], length, "decoder_"))
    return row

  def features(self, backbone, batch, *, reads, pooling, deterministic):
    encoded = backbone.encode(batch["encoder_inputs"],
                              encoder_segment_ids=batch["encoder_segment_ids"],
                              encoder_positions=batch["encoder_positions"],
                              deterministic=deterministic)  # [B, S, D]
    if reads == "tokens":
      return encoded
    if reads == "pooled" and pooling == "mean":
      return mean_tokens(encoded, batch["encoder_segment_ids"])
    hidden = backbone.decode(encoded, batch["decoder_inputs"],
                             encoder_segment_ids=batch["encoder_segment_ids"],
                             decoder_segment_ids=batch["decoder_segment_ids"],
                             decoder_positions=batch["decoder_positions"],
                             deterministic=deterministic, features=True)  # [B, T, D]
    return last_token(hidden, batch["decoder_segment_ids"]) if reads == "pooled" else hidden

  def lm_logits(self, module, tokens, *, positions, segment_ids, encoded=None,
                encoder_segment_ids=None, decode=False, features=False):
    return module.decode(encoded, tokens, encoder_segment_ids=encoder_segment_ids,
                         decoder_segment_ids=segment_ids, decoder_positions=positions,
                         decode=decode, features=features)

  def output_kernel(self, config, params):
    """T5's tied head multiplies by D^-0.5 (its embedding is unit-scale); the 2017 model's
    (scale_embeddings) does not."""
    table = super().output_kernel(config, params)
    if config.tie_embeddings and not config.scale_embeddings:
      table = table * config.embed_dim ** -0.5
    return table

  def head_stack(self, config, reads):
    if reads == "tokens":
      return ("encoder",), config.num_layers, ()
    return ("decoder",), config.decoder_layers, ()

  def _stacks(self, config, seq_len, target_len, reads, pooling):
    """The encoder on seq_len tokens; the decoder (on target_len tokens, default seq_len; a
    pooled head's on the input shifted, seq_len) unless the head reads the encoder."""
    encoder = (config.num_layers, _layer(config, seq_len), reads == "tokens")
    if reads == "tokens" or (reads == "pooled" and pooling == "mean"):
      return [encoder]
    t = _decoder_length(seq_len, target_len, reads)
    return [encoder, (config.decoder_layers, _layer(config, t, seq_len), True)]

  def _outputs(self, config, seq_len, target_len, reads, outputs, pooling):
    t = _decoder_length(seq_len, target_len, reads)
    if not reads:
      return 0.0, 2.0 * t * config.embed_dim * config.vocab_size
    return 0.0, _task_head(config, seq_len if reads == "tokens" else t, reads, outputs)


def _decoder_length(seq_len: int, target_len: int | None, reads: str) -> int:
  """An encoder-decoder's decoder tokens: the target's (default seq_len), or for a pooled head
  the input's, shifted."""
  return (target_len or seq_len) if reads in ("", "lm") else seq_len


DECODER, ENCODER, ENCODER_DECODER = Family(), EncoderFamily(), EncoderDecoderFamily()
FAMILIES = {f.name: f for f in (DECODER, ENCODER, ENCODER_DECODER)}


def get(name: str) -> Family:
  """The family called `name` (model.family)."""
  if name not in FAMILIES:
    raise ConfigError(f"model.family must be one of {', '.join(FAMILIES)}; got {name!r}")
  return FAMILIES[name]
