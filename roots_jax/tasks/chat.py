"""Instruction and chat tuning: supervised fine-tuning on conversations, the loss on the
assistant's tokens only, for the families that generate.

A record is a single turn, {"prompt", "response"} (and an optional "system"), or a conversation,
{"messages": [{"role": "system" | "user" | "assistant", "content"}, ...]} ending with an
assistant turn. It is rendered with the run's chat template (task.chat_template: the tokenizer's
or data.chat_template.BUILTIN, recorded in the run's config.json so that generation renders as
training did) and tokenized with the assistant's turns marked (data.chat_template.ChatFormat).

Rows (L = task.max_len, T = task.target_len):
  decoder: [L+T] inputs, targets (inputs shifted left within a conversation), weights (float32:
    1.0 where the target is an assistant token, its content or its end-of-turn marker; nothing on
    system or user text or template scaffolding), segment_ids, positions, prompt_len []. Training
    with task.packing packs several conversations per row (grain's first-fit packer): each its own
    segment id, positions from 0, so attention never crosses conversations; a conversation longer
    than a row keeps its first L+T tokens. Without packing, and always for validation and test
    (scored by generation), a row holds one conversation; an evaluation row is laid out as
    seq2seq's: the prompt (the conversation before its last assistant turn with the generation
    prompt, its last L tokens) then that turn (its first T tokens), weighted, and prompt_len.
  encoder_decoder: one example per conversation: the encoder reads the conversation before its
    last assistant turn with the generation prompt (its last L-1 tokens, then eos), the decoder
    predicts that turn (content and end-of-turn marker, then eos where the marker is not eos, at
    most T tokens), as seq2seq's rows. Earlier assistant turns are context only.
"""

import grain
import ml_collections
import numpy as np

from roots_jax.data import chat_template, task_rows
from roots_jax.data.chat_template import ChatFormat
from roots_jax.errors import ConfigError, DataError
from roots_jax.models.families import sequence_row
from roots_jax.tasks.base import TaskKind
from roots_jax.tasks.seq2seq import Seq2Seq


class Chat(TaskKind):
  name = "chat"
  reads = "lm"
  default_metric = "loss"
  evaluator = "generation"
  # Rows, head and loss are seq2seq's.
  spec, row_length, num_outputs, loss = (Seq2Seq.spec, Seq2Seq.row_length, Seq2Seq.num_outputs,
                                         Seq2Seq.loss)

  def check_family(self, family):
    if not family.generates:
      raise ConfigError("task.kind=chat needs a model that generates text (model.family decoder "
                        "or encoder_decoder), not an encoder (BERT)")

  def validate(self, task):
    super().validate(task)
    if task.target_len < 2:
      raise ConfigError(f"task.target_len ({task.target_len}) must be at least 2: a token and eos")

  def example(self, record, task, where):
    if "messages" in record:
      messages = chat_template.check_messages(record["messages"], where)
    elif "prompt" in record and "response" in record:
      turn = {"system": record.get("system"), "user": record["prompt"],
              "assistant": record["response"]}
      messages = chat_template.check_messages(
          [{"role": r, "content": c} for r, c in turn.items() if r != "system" or c is not None],
          where)
    else:
      raise DataError(f"{where} has neither \"messages\" nor \"prompt\" and \"response\" (has: "
                      f"{', '.join(map(str, record))}); task.kind=chat reads those fields")
    return conversation_example(messages, where)

  def format(self, config: ml_collections.ConfigDict, tokenizer) -> ChatFormat:
    return ChatFormat(chat_template.resolve(config.task.chat_template, tokenizer), tokenizer)

  def prepare(self, config: ml_collections.ConfigDict, tokenizer) -> None:
    """Records the template the run trains with in its config (task.chat_template)."""
    with config.unlocked():
      config.task.chat_template = chat_template.resolve(config.task.chat_template, tokenizer)

  def dataset(self, config, tokenizer, labels, examples, *, family, split, process_index=0,
              process_count=1):
    task, chat = config.task, self.format(config, tokenizer)
    n = task.max_len + task.target_len
    packed = split == "train" and task.packing and not family.has_encoder
    if split != "train" or family.has_encoder:
      encode = lambda e: self.last_turn_row(e, chat, family=family, max_len=task.max_len,
                                            target_len=task.target_len)
    elif packed:
      encode = lambda e: self.conversation(e, chat, n)
    else:
      encode = lambda e: _padded(self.conversation(e, chat, n), n)
    zero = task_rows.zero_row(self.spec(family, task.max_len, task.target_len))
    ds = task_rows.make_dataset(examples, encode, zero, batch_size=config.train.batch_size,
                                seed=config.seed, split=split, process_index=process_index,
                                process_count=process_count, batched=not packed)
    if not packed:
      return ds
    local_batch = config.train.batch_size // process_count
    ds = grain.experimental.FirstFitPackIterDataset(
        ds, length_struct={"inputs": n, "targets": n, "weights": n},
        num_packing_bins=local_batch, seed=config.seed, shuffle_bins=False)
    return ds.map(_finalize).batch(local_batch, drop_remainder=True)

  def conversation(self, example, chat: ChatFormat, length: int) -> dict[str, np.ndarray]:
    """A decoder's unpadded training example of a whole conversation: inputs, targets, weights
    [<= length] (the first length + 1 tokens)."""
    ids, spans = chat.encode(example["messages"])
    assistant = np.zeros(len(ids), np.float32)
    for a, b in spans:
      assistant[a:b] = 1.0
    ids = np.asarray(ids[:length + 1], np.int32)
    return {"inputs": ids[:-1], "targets": ids[1:], "weights": assistant[1:len(ids)]}

  def last_turn_row(self, example, chat: ChatFormat, *, family, max_len: int,
                    target_len: int) -> dict[str, np.ndarray]:
    """One conversation's row scored on its last assistant turn (see the module docstring)."""
    messages = example["messages"]
    ids, spans = chat.encode(messages)
    start, end = spans[-1]
    prompt, turn = ids[:start], ids[start:end]
    eos = chat.tokenizer.eos_id
    if family.has_encoder:
      source = prompt[-(max_len - 1):] + [eos]
      target = (turn if turn and turn[-1] == eos else turn + [eos])
      target = target if len(target) <= target_len else target[:target_len - 1] + [eos]
      row = sequence_row(source, max_len, "encoder_")
      row.update(sequence_row([0] + target[:-1], target_len, "decoder_"))
      row["decoder_targets"] = task_rows.padded(target, target_len, np.int32)
      row["decoder_weights"] = task_rows.padded([1.0] * len(target), target_len, np.float32)
      return row
    prompt, turn = prompt[-max_len:], turn[:target_len]
    length = max_len + target_len
    row = sequence_row(prompt + turn, length)
    row["targets"] = task_rows.padded((prompt + turn)[1:], length, np.int32)
    row["weights"] = task_rows.padded([0.0] * (len(prompt) - 1) + [1.0] * len(turn), length,
                                      np.float32)
    row["prompt_len"] = np.int32(len(prompt))
    return row

  def chat_ids(self, messages, *, family, chat: ChatFormat, max_len: int | None) -> list[int]:
    """What generation continues for a conversation, as the evaluation rows lay it out: the
    rendered conversation with the generation prompt, its last max_len tokens (an
    encoder-decoder's last max_len - 1, then eos); max_len None: all of them."""
    ids = chat.prompt_ids(chat_template.check_messages(list(messages), "the conversation"))
    if family.has_encoder:
      return ids[-(max_len - 1):] + [chat.tokenizer.eos_id] if max_len else ids + [
          chat.tokenizer.eos_id]
    return ids[-max_len:] if max_len else ids


def conversation_example(messages: list[dict], where: str) -> dict:
  """A conversation as an example: its messages, and for generation's scoring and samples the
  text before its last assistant turn ("text": that turn's user message) and the turn
  ("target")."""
  if messages[-1]["role"] != "assistant":
    raise DataError(f"{where}: the last message is the {messages[-1]['role']}'s; a training "
                    "conversation ends with an assistant turn")
  before = [m["content"] for m in messages[:-1] if m["role"] != "assistant"]
  return {"messages": messages, "text": before[-1] if before else "",
          "target": messages[-1]["content"]}


def _padded(example: dict[str, np.ndarray], length: int) -> dict[str, np.ndarray]:
  """One conversation as a padded row."""
  row = sequence_row(example["inputs"].tolist(), length)
  row["targets"] = task_rows.padded(example["targets"], length, np.int32)
  row["weights"] = task_rows.padded(example["weights"], length, np.float32)
  row["prompt_len"] = np.int32(0)
  return row


def _finalize(packed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A packed row as the model and the loss read it (segment ids 1, 2, ... per conversation)."""
  return {"inputs": packed["inputs"], "targets": packed["targets"],
          "weights": packed["weights"].astype(np.float32),
          "segment_ids": packed["inputs_segment_ids"], "positions": packed["inputs_positions"],
          "prompt_len": np.int32(0)}


KIND = Chat()
