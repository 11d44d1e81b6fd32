"""Chat templates: conversations rendered to text as Hugging Face's `apply_chat_template` renders
them, and that text as token ids with the assistant's tokens marked.

A template is Jinja, compiled as transformers compiles it (an ImmutableSandboxedEnvironment with
trim_blocks, lstrip_blocks and loop controls; raise_exception, strftime_now and namespace
globals; a tojson filter that leaves HTML characters alone) and rendered with `messages`,
`add_generation_prompt` and the tokenizer's special tokens (bos_token, eos_token, ...). The
template is the `chat_template` of a Hugging Face tokenizer_config.json where the run's
tokenizer has one, else BUILTIN: Zephyr's role markers, with eos closing each
assistant turn, so generation stops at the end of a turn:

  <s><|system|>\\nSYSTEM\\n<|user|>\\nQUESTION\\n<|assistant|>\\nANSWER</s>\\n

Which tokens are the assistant's is read off the rendered text, for any template that renders a
conversation's beginning as the beginning of the whole (every template we know does): assistant
turn i begins where render(messages[:i], add_generation_prompt=True) ends and ends where
render(messages[:i + 1]) ends, less trailing whitespace (the scaffolding after an end-of-turn
marker), so it holds the turn's content and its end-of-turn marker. The text is tokenized in
pieces cut at those character offsets and at special tokens' strings (which become their ids, as
HF's tokenizers split added tokens out first; our tokenizers never make them from text), so each
token is wholly inside or outside the assistant's turns, and a prompt for generation tokenizes
exactly as the same prefix of a training row. Generation stops at the turn's closing special
token (end_of_turn_id).
"""

import datetime
import functools
import json
import re
from typing import Any, Sequence

import jinja2
import jinja2.ext
import jinja2.sandbox

from roots_jax.data.tokenizers import BaseTokenizer
from roots_jax.errors import ConfigError, DataError

ROLES = ("system", "user", "assistant")
BUILTIN = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}")


def _raise_exception(message: str):
  raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
  return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                    sort_keys=sort_keys)


@functools.lru_cache(maxsize=16)
def compile_template(template: str) -> jinja2.Template:
  """The Jinja template `template`, compiled in transformers' sandbox."""
  env = jinja2.sandbox.ImmutableSandboxedEnvironment(
      trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
  env.filters["tojson"] = _tojson
  env.globals["raise_exception"] = _raise_exception
  env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
  env.globals["namespace"] = jinja2.utils.Namespace
  try:
    return env.from_string(template)
  except jinja2.exceptions.TemplateSyntaxError as e:
    raise ConfigError(f"the chat template does not parse (line {e.lineno}: {e.message}); fix "
                      "task.chat_template") from e


def tokenizer_template(tokenizer: BaseTokenizer) -> str:
  """The chat template of a Hugging Face tokenizer's files ("" without one): tokenizer_config's
  chat_template (a string, or named templates of which "default")."""
  template = getattr(tokenizer, "config", {}).get("chat_template") or ""
  if isinstance(template, list):
    template = next((t.get("template", "") for t in template if t.get("name") == "default"), "")
  return template if isinstance(template, str) else ""


def resolve(template: str, tokenizer: BaseTokenizer) -> str:
  """`template` (task.chat_template) if set, else the tokenizer's, else BUILTIN."""
  return template or tokenizer_template(tokenizer) or BUILTIN


def check_messages(messages: Any, where: str) -> list[dict[str, str]]:
  """`messages` as a list of {"role", "content"} dicts; DataError naming `where` otherwise."""
  if not isinstance(messages, list) or not messages:
    raise DataError(f"{where}: messages must be a non-empty list of {{\"role\", \"content\"}} "
                    f"objects, not {type(messages).__name__}")
  out = []
  for i, m in enumerate(messages):
    if not isinstance(m, dict) or "role" not in m or "content" not in m:
      raise DataError(f"{where}: message {i} must be an object with \"role\" and \"content\"")
    if m["role"] not in ROLES:
      raise DataError(f"{where}: message {i} has role {m['role']!r}; use one of "
                      f"{', '.join(ROLES)}")
    if not isinstance(m["content"], str):
      raise DataError(f"{where}: message {i} content holds {type(m['content']).__name__}, not "
                      "text")
    out.append({"role": m["role"], "content": m["content"]})
  return out


class ChatFormat:
  """A template with a tokenizer: conversations -> text -> ids and the assistant's tokens."""

  def __init__(self, template: str, tokenizer: BaseTokenizer):
    self.template, self.tokenizer = template, tokenizer
    self._compiled = compile_template(template)
    piece = lambda i: tokenizer.id_to_piece(i) if i >= 0 else ""
    self.variables = {"bos_token": piece(tokenizer.bos_id), "eos_token": piece(tokenizer.eos_id),
                      "pad_token": piece(tokenizer.pad_id), "unk_token": piece(tokenizer.unk_id)}
    self._special = {}  # special token text -> id (unk excepted: "<unk>" typed stays text)
    for i in range(tokenizer.vocab_size):
      if tokenizer.is_special(i) and i != tokenizer.unk_id and tokenizer.id_to_piece(i):
        self._special.setdefault(tokenizer.id_to_piece(i), i)
    longest_first = sorted(self._special, key=len, reverse=True)
    self._split = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None

  def render(self, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
    """apply_chat_template(messages, tokenize=False, add_generation_prompt=...)'s text."""
    try:
      return self._compiled.render(messages=list(messages),
                                   add_generation_prompt=add_generation_prompt, **self.variables)
    except jinja2.exceptions.TemplateError as e:
      raise DataError(f"the chat template refused a conversation: {e}") from e

  def assistant_spans(self, messages: Sequence[dict],
                      add_generation_prompt: bool = False) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the character span [start, end) of each assistant turn (see the
    module docstring)."""
    text = self.render(messages, add_generation_prompt)
    spans = []
    for i, m in enumerate(messages):
      if m["role"] != "assistant":
        continue
      before = self.render(messages[:i], add_generation_prompt=True)
      through = self.render(messages[:i + 1]).rstrip()
      if not (text.startswith(before) and text.startswith(through) and
              len(before) <= len(through)):
        raise ConfigError("the chat template renders the beginning of a conversation other than "
                          "as the beginning of the whole, so the assistant's tokens cannot be "
                          "found; use a template without that (task.chat_template)")
      spans.append((len(before), len(through)))
    return text, spans

  def encode(self, messages: Sequence[dict],
             add_generation_prompt: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of the rendered conversation and the token span [start, end) of each
    assistant turn."""
    text, spans = self.assistant_spans(messages, add_generation_prompt)
    cuts = sorted({0, len(text), *(c for span in spans for c in span)})
    ids, at = [], {}
    for a, b in zip(cuts, cuts[1:]):
      at[a] = len(ids)
      ids += self._encode_piece(text[a:b])
    at[len(text)] = len(ids)
    return ids, [(at[a], at[b]) for a, b in spans]

  @functools.cached_property
  def end_of_turn_id(self) -> int:
    """The id that closes an assistant turn, where generation stops: the turn's last token when
    it is a special one (eos in BUILTIN, ChatML's <|im_end|>), else eos."""
    ids, spans = self.encode([{"role": "user", "content": "x"},
                              {"role": "assistant", "content": "y"}])
    last = ids[spans[0][1] - 1]
    return last if self.tokenizer.is_special(last) else self.tokenizer.eos_id

  def prompt_ids(self, messages: Sequence[dict]) -> list[int]:
    """What generation continues: the conversation with the generation prompt, tokenized as a
    training row's same prefix."""
    return self.encode(messages, add_generation_prompt=True)[0]

  def _encode_piece(self, text: str) -> list[int]:
    """Text with special tokens' strings as their ids, the rest tokenized between them."""
    if self._split is None:
      return self.tokenizer.encode(text) if text else []
    ids, at = [], 0
    for match in self._split.finditer(text):
      if match.start() > at:
        ids += self.tokenizer.encode(text[at:match.start()])
      ids.append(self._special[match.group()])
      at = match.end()
    if at < len(text):
      ids += self.tokenizer.encode(text[at:])
    return ids
