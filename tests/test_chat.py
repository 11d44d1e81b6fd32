"""Instruction and chat tuning (task.kind=chat): templates rendered as transformers renders them,
the loss on exactly the assistant's tokens of packed conversations that never attend across,
encoder-decoder rows, the record formats and their errors, the built-in instructions, and a
tuned run's chat (the API and generate --chat) prompting exactly as training did."""

import io
import json
import random

import jax
import ml_collections
import numpy as np
import pytest

from roots_jax import generate, tasks
from roots_jax.api import LanguageModel
from roots_jax.config import finetune_config
from roots_jax.data import builtin_tasks, chat_template, hf_tokenizers, load_tokenizer
from roots_jax.data.chat_template import BUILTIN, ChatFormat
from roots_jax.errors import ConfigError, DataError
from roots_jax.evals import generation
from roots_jax.models import families
from roots_jax.runs import finetune as finetune_lib
from tiny_gpt import tiny_finetune_config

CHAT = tasks.get("chat")
WORDS = ["ba", "ko", "mi", "tu", "ze", "lo", "pa", "ri", "7", "42"]
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
          "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")
# Block tags on their own lines (trim_blocks, lstrip_blocks), a namespace, a filter, tojson and
# raise_exception; not incremental: the generation prompt is not a turn's beginning.
LLAMA_LIKE = """{%- set ns = namespace(system='') -%}
{% for message in messages %}
  {% if message['role'] == 'system' %}
    {% set ns.system = message['content'] %}
  {% elif message['role'] == 'user' %}
{{ bos_token }}[INST] {% if ns.system %}<<SYS>>{{ ns.system }}<</SYS>> {% endif %}
{{- message['content'] | trim }} [/INST]
  {% elif message['role'] == 'assistant' %}
 {{ message['content'] | trim }} {{ eos_token }}
  {% else %}
    {{ raise_exception('unknown role ' + message['role']) }}
  {% endif %}
{% endfor %}
{% if add_generation_prompt %}{{ {'role': 'assistant', "note": "<&>"} | tojson }}{% endif %}"""
CONVERSATION = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "What is 7 + 42? "},
                {"role": "assistant", "content": "It is 49 & <more>."}]


def _conversation(rng: random.Random, turns: int) -> list[dict]:
  words = lambda: " ".join(rng.choices(WORDS, k=rng.randint(1, 4)))
  messages = [{"role": "system", "content": words()}] if rng.random() < 0.5 else []
  for _ in range(turns):
    messages += [{"role": "user", "content": words()}, {"role": "assistant", "content": words()}]
  return messages


def _examples(n: int, seed: int = 0, turns: int = 2) -> list[dict]:
  rng = random.Random(seed)
  return [CHAT.example({"messages": _conversation(rng, rng.randint(1, turns))}, None, f"r{i}")
          for i in range(n)]


def _config(max_len: int, target_len: int, batch_size: int = 4, **task):
  c = finetune_config()
  c.task.update(kind="chat", max_len=max_len, target_len=target_len, **task)
  c.train.batch_size = batch_size
  return c


# Templates.


@pytest.mark.extra("hf")
@pytest.mark.parametrize("template", [BUILTIN, CHATML, LLAMA_LIKE],
                         ids=["builtin", "chatml", "llama_like"])
@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_rendering_equals_transformers(template, add_generation_prompt, tokenizer, tmp_path):
  """A PreTrainedTokenizerFast built here with the same special tokens renders the same text."""
  import tokenizers  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  ours = ChatFormat(template, tokenizer)
  specials = ours.variables
  vocab = {token: i for i, token in enumerate(dict.fromkeys(specials.values()))}
  word_level = tokenizers.models.WordLevel(vocab, unk_token=specials["unk_token"])
  backend = tokenizers.Tokenizer(word_level)
  backend.save(str(tmp_path / "tokenizer.json"))
  hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"),
                                            **specials)
  hf.chat_template = template
  expected = hf.apply_chat_template(CONVERSATION, tokenize=False,
                                    add_generation_prompt=add_generation_prompt)
  assert ours.render(CONVERSATION, add_generation_prompt) == expected
  assert CONVERSATION[2]["content"] in expected


@pytest.mark.extra("hf")
def test_a_converted_tokenizers_template_and_special_tokens(tmp_path):
  """A GPT-2 tokenizer directory whose tokenizer_config.json has a ChatML chat_template and
  <|im_start|>, <|im_end|> as added special tokens: the template is the run's, the text and ids
  are those of transformers' apply_chat_template (tokenize=False and True), and a turn ends
  with <|im_end|>, where generation stops (not eos, <|endoftext|>)."""
  import transformers  # pylint: disable=g-import-not-at-top
  vocab = {c: i for i, c in enumerate(hf_tokenizers.bytes_to_unicode().values())}
  vocab["<|endoftext|>"] = n = len(vocab)
  (tmp_path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
  (tmp_path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
  (tmp_path / "tokenizer_config.json").write_text(json.dumps({
      "tokenizer_class": "GPT2Tokenizer", "chat_template": CHATML,
      "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
      "added_tokens_decoder": {str(n + 1): {"content": "<|im_start|>", "special": True},
                               str(n + 2): {"content": "<|im_end|>", "special": True}}}))
  tok = load_tokenizer(str(tmp_path))
  assert chat_template.resolve("", tok) == CHATML
  ours = ChatFormat(CHATML, tok)
  hf = transformers.GPT2Tokenizer.from_pretrained(str(tmp_path))
  for add_generation_prompt in (False, True):
    options = dict(add_generation_prompt=add_generation_prompt)
    assert ours.render(CONVERSATION, **options) == hf.apply_chat_template(
        CONVERSATION, tokenize=False, **options)
    ids = hf.apply_chat_template(CONVERSATION, tokenize=True, **options)
    assert ours.encode(CONVERSATION, **options)[0] == list(getattr(ids, "input_ids", ids))
  ids, spans = ours.encode(CONVERSATION)
  assert ids[spans[0][1] - 1] == ours.end_of_turn_id == n + 2 != tok.eos_id == n
  assert ChatFormat(BUILTIN, tok).end_of_turn_id == n
  # The validation generations of a chat run end there too.
  task = ml_collections.ConfigDict({"kind": "chat", "chat_template": CHATML})
  assert generation.stop_id(task, tok) == n + 2
  assert generation.stop_id(ml_collections.ConfigDict({"kind": "seq2seq"}), tok) == n
  reply = tok.encode("It is 49.")
  rows = [(np.array([reply + [n + 2] + tok.encode(" more") + [n]], np.int32), {})]
  assert generation.generations(rows, [{}], tok, 1, n + 2) == [(0, "It is 49.")]


def test_template_errors_and_the_tokenizers_template(tokenizer):
  with pytest.raises(DataError, match="unknown role tool"):
    ChatFormat(LLAMA_LIKE, tokenizer).render([{"role": "tool", "content": "x"}])
  with pytest.raises(ConfigError, match="beginning of a conversation"):
    ChatFormat(LLAMA_LIKE, tokenizer).encode(CONVERSATION)
  with pytest.raises(ConfigError, match="does not parse"):
    ChatFormat("{% for m in messages %}", tokenizer)

  class HFLike:
    config = {"chat_template": [{"name": "tool_use", "template": "T"},
                                {"name": "default", "template": CHATML}]}

  assert chat_template.resolve("", HFLike()) == CHATML
  assert chat_template.resolve("", tokenizer) == BUILTIN  # sentencepiece: none of its own
  assert chat_template.resolve(CHATML, tokenizer) == CHATML


def test_assistant_spans_are_the_turns_and_their_end_marker(tokenizer):
  """ChatML's end-of-turn marker is text to our tokenizer: the span still ends after it."""
  messages = CONVERSATION + [{"role": "user", "content": "And 1 + 1?"},
                             {"role": "assistant", "content": "2"}]
  eos = tokenizer.id_to_piece(tokenizer.eos_id)
  for template, marker in ((BUILTIN, eos), (CHATML, "<|im_end|>")):
    text, spans = ChatFormat(template, tokenizer).assistant_spans(messages)
    assert [text[a:b] for a, b in spans] == [m["content"] + marker for m in messages
                                             if m["role"] == "assistant"]
  ids, token_spans = ChatFormat(BUILTIN, tokenizer).encode(messages)
  assert [ids[a:b] for a, b in token_spans] == [
      tokenizer.encode(m["content"]) + [tokenizer.eos_id] for m in messages
      if m["role"] == "assistant"]


# Rows.


def test_packed_loss_mask_is_exactly_the_assistant_tokens(tokenizer):
  """Token by token: each packed conversation is its own segment (positions from 0), its
  weighted targets are exactly each assistant turn's content tokens then eos, in order, and
  nothing else is weighted."""
  examples = _examples(24)
  chat = ChatFormat(BUILTIN, tokenizer)
  encoded = {tuple(chat.encode(e["messages"])[0]): e["messages"] for e in examples}
  ds = CHAT.dataset(_config(96, 32), tokenizer, None, examples,
                    family=families.get("decoder"), split="train")
  batch = next(iter(ds))
  most_segments = 0
  for inputs, targets, weights, segments, positions in zip(
      batch["inputs"], batch["targets"], batch["weights"], batch["segment_ids"],
      batch["positions"]):
    count = segments.max()
    most_segments = max(most_segments, count)
    real = int((segments > 0).sum())
    assert segments[:real].tolist() == sorted(segments[:real]) and not weights[real:].any()
    for s in range(1, count + 1):
      at = np.flatnonzero(segments == s)
      assert positions[at].tolist() == list(range(len(at)))
      ids = tuple(inputs[at].tolist()) + (int(targets[at[-1]]),)
      messages = encoded[ids]  # every segment is one whole conversation (they all fit)
      runs, run = [], []
      for target, weight in zip(targets[at], weights[at]):
        if weight:
          run.append(int(target))
        elif run:
          runs, run = runs + [run], []
      runs += [run] if run else []
      assert set(weights[at].tolist()) <= {0.0, 1.0}
      assert runs == [tokenizer.encode(m["content"]) + [tokenizer.eos_id] for m in messages
                      if m["role"] == "assistant"]
  assert most_segments >= 2


def test_packed_conversations_never_attend_across(pretrained):
  """The logits of each conversation in a packed row equal its logits alone in a row, at float32
  tolerance."""
  lm = LanguageModel.from_pretrained(pretrained["decoder"])
  examples = [CHAT.example({"prompt": a, "response": b}, None, "r") for a in WORDS[:4]
              for b in WORDS[4:8]]  # short: two or more fit the tiny model's 64 positions
  batch = next(iter(CHAT.dataset(_config(40, 24), lm.tokenizer, None, examples,
                                 family=families.get("decoder"), split="train")))
  logits = jax.jit(lambda params, b: lm.model.apply(
      {"params": params}, b["inputs"], positions=b["positions"], segment_ids=b["segment_ids"]))
  packed = np.asarray(logits(lm.params, batch))
  row = int(np.argmax(batch["segment_ids"].max(1)))
  segments = batch["segment_ids"][row]
  assert segments.max() >= 2
  for s in range(1, segments.max() + 1):
    at = np.flatnonzero(segments == s)
    alone = {k: np.zeros_like(v) for k, v in batch.items() if k != "prompt_len"}
    alone["inputs"][:, :len(at)] = batch["inputs"][row, at]
    alone["segment_ids"][:, :len(at)] = 1
    alone["positions"][:, :len(at)] = np.arange(len(at))
    single = np.asarray(logits(lm.params, alone))[0, :len(at)]
    np.testing.assert_allclose(packed[row, at], single, rtol=1e-5, atol=1e-5)


def test_unpacked_and_evaluation_rows(tokenizer):
  """Without packing a row is one conversation; an evaluation row is its prompt (what chat()
  continues) and its last turn, weighted, as seq2seq lays rows out."""
  examples = _examples(8, seed=1)
  chat = ChatFormat(BUILTIN, tokenizer)
  decoder = families.get("decoder")
  config = _config(48, 16, packing=False)
  train = next(iter(CHAT.dataset(config, tokenizer, None, examples, family=decoder,
                                 split="train")))
  assert train["segment_ids"].max() == 1
  rows = next(iter(CHAT.dataset(config, tokenizer, None, examples, family=decoder,
                                split="validation")))
  for i, e in enumerate(examples[:4]):
    prompt = CHAT.chat_ids(e["messages"][:-1], family=decoder, chat=chat, max_len=48)
    turn = tokenizer.encode(e["target"]) + [tokenizer.eos_id]
    n = len(prompt) + len(turn)
    assert rows["prompt_len"][i] == len(prompt)
    assert rows["inputs"][i, :n].tolist() == prompt + turn
    assert rows["targets"][i, :n - 1].tolist() == (prompt + turn)[1:]
    assert np.flatnonzero(rows["weights"][i]).tolist() == list(range(len(prompt) - 1, n - 1))


def test_encoder_decoder_rows_are_the_last_turn(tokenizer):
  """The encoder reads the conversation before its last assistant turn with the generation
  prompt (its last max_len - 1 tokens), then eos; the decoder predicts that turn (content,
  eos)."""
  examples = _examples(8, seed=2)
  chat = ChatFormat(BUILTIN, tokenizer)
  family = families.get("encoder_decoder")
  rows = next(iter(CHAT.dataset(_config(48, 16), tokenizer, None, examples, family=family,
                                split="train")))
  encoded = {tuple(r[r > 0].tolist()) for r in rows["encoder_inputs"]}
  for i in range(len(rows["encoder_inputs"])):
    source = rows["encoder_inputs"][i][rows["encoder_segment_ids"][i] > 0].tolist()
    e = next(e for e in examples
             if chat.prompt_ids(e["messages"][:-1])[-47:] + [tokenizer.eos_id] == source)
    target = tokenizer.encode(e["target"]) + [tokenizer.eos_id]
    n = len(target)
    assert rows["decoder_targets"][i, :n].tolist() == target and not rows["decoder_targets"][
        i, n:].any()
    assert rows["decoder_inputs"][i, :n].tolist() == [0] + target[:-1]
    assert rows["decoder_weights"][i].tolist() == [1.0] * n + [0.0] * (16 - n)
  assert len(encoded) > 1


# Records.


def test_prompt_response_is_a_single_turn_conversation():
  record = {"system": "Be brief.", "prompt": "Hi?", "response": "Hello."}
  messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
              {"role": "assistant", "content": "Hello."}]
  assert CHAT.example(record, None, "r") == CHAT.example({"messages": messages}, None, "r") == {
      "messages": messages, "text": "Hi?", "target": "Hello."}
  del record["system"]
  assert CHAT.example(record, None, "r")["messages"] == messages[1:]


@pytest.mark.parametrize("record,message", [
    ({"text": "x"}, "neither \"messages\" nor \"prompt\" and \"response\""),
    ({"messages": []}, "non-empty list"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "role 'bot'"),
    ({"messages": [{"role": "user"}]}, "\"role\" and \"content\""),
    ({"messages": [{"role": "user", "content": 3}]}, "holds int, not text"),
    ({"messages": [{"role": "user", "content": "x"}]}, "ends with an assistant turn"),
    ({"prompt": ["x"], "response": "y"}, "holds list"),
])
def test_bad_records_name_the_record(record, message, tmp_path):
  path = tmp_path / "train.jsonl"
  good = {"prompt": "a", "response": "b"}
  path.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
  task = _config(16, 8, source="files", train_files=str(path)).task
  with pytest.raises(DataError, match=f"{path}:2") as e:
    CHAT.load_examples(task, "train")
  assert message in str(e.value)


def test_builtin_instructions_mix_questions_with_answers_from_the_syntax_tree():
  examples = builtin_tasks.load_examples("instructions", "validation")
  questions = {e["messages"][0]["content"].split("\n")[0] for e in examples}
  assert questions == {"Write a one-line summary of this function:",
                       "Which arguments does this function take?",
                       "What does this function return?"}
  code = ("def f(a, b=1, *rest, key, **options):\n  def inner():\n    return 0\n"
          "  if a:\n    return a + b\n  return None")
  e = builtin_tasks._instructions(builtin_tasks.Function("m.py", "", "Add a and b up.", code))
  assert [x["target"] for x in e] == ["Add a and b up.",
                                      "It takes a, b, *rest, key and **options.",
                                      "It returns one of: a + b; None."]
  assert all(x["messages"][0]["content"].endswith(code) for x in e)
  generator = builtin_tasks.Function("m.py", "", "Yield the items one by one.",
                                     "def g(self):\n  yield 1")
  assert [x["target"] for x in builtin_tasks._instructions(generator)] == [
      "Yield the items one by one.", "It takes self."]


def test_an_encoder_cannot_chat():
  with pytest.raises(ConfigError, match="not an encoder"):
    CHAT.check_family(families.get("encoder"))


# A tuned run.


@pytest.fixture(scope="module")
def chat_files(tmp_path_factory):
  root = tmp_path_factory.mktemp("chat")
  rng = random.Random(3)
  paths = []
  for split, count in (("train", 32), ("validation", 8), ("test", 8)):
    records = []
    for _ in range(count):
      words = rng.choices(WORDS, k=3)
      records.append({"prompt": " ".join(words), "response": " ".join(reversed(words))}
                     if rng.random() < 0.5 else {"messages": _conversation(rng, 2)})
    path = root / f"{split}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    paths.append(str(path))
  return {"chat": paths}


@pytest.mark.parametrize("family", ["decoder", "encoder_decoder"])
def test_a_tuned_run_chats_as_it_trained(family, pretrained, chat_files, tmp_path, capsys,
                                         monkeypatch):
  """The run records its template; LanguageModel.chat and generate --chat prompt with exactly
  the ids the training rows hold before the assistant's turn, and agree."""
  workdir = str(tmp_path / "run")
  metrics = finetune_lib.finetune(tiny_finetune_config(
      "chat", pretrained[family], chat_files, task__max_len=48, task__target_len=16,
      finetune__metric="rougeL", train__steps=2, train__eval_every=2), workdir)
  assert {"loss", "rougeL", "exact_match"} <= set(metrics)
  with open(f"{workdir}/config.json") as f:
    assert json.load(f)["task"]["chat_template"] == BUILTIN
  lm = LanguageModel.from_pretrained(workdir)
  assert lm.task == "chat"
  tokenizer = load_tokenizer(lm.config.tokenizer.path)
  chat = ChatFormat(BUILTIN, tokenizer)
  examples = CHAT.load_examples(lm.config.task, "validation")
  rows = next(iter(CHAT.dataset(lm.config, tokenizer, None, examples,
                                family=families.get(family), split="validation")))
  for i, e in enumerate(examples[:4]):
    prompt = lm.chat_ids(e["messages"][:-1])
    if family == "decoder":
      ids, spans = chat.encode(e["messages"])
      # The prompt's last task.max_len tokens, as the rows keep them.
      assert prompt == ids[:spans[-1][0]][-48:] == rows["inputs"][
          i, :rows["prompt_len"][i]].tolist()
    else:
      assert prompt == rows["encoder_inputs"][i][rows["encoder_segment_ids"][i] > 0].tolist()
  messages = examples[0]["messages"][:-1]
  reply = lm.chat(messages, max_new_tokens=6)
  assert isinstance(reply, str)
  path = tmp_path / "conversation.json"
  path.write_text(json.dumps(messages))
  capsys.readouterr()
  assert generate.main(["--workdir", workdir, "--chat", "--messages", str(path),
                        "--max_new_tokens", "6"]) == 0
  assert capsys.readouterr().out.splitlines()[1] == f"[1] {reply}"
  user = examples[1]["text"]
  assert generate.main(["--workdir", workdir, "--chat", "--prompt", user,
                        "--max_new_tokens", "6"]) == 0
  assert capsys.readouterr().out.splitlines()[1] == (
      f"[1] {lm.chat([{'role': 'user', 'content': user}], max_new_tokens=6)}")
  assert lm.generate(user, max_new_tokens=6) == [lm.chat(user, max_new_tokens=6)]
  # Interactively: a message per line, each reply joining the conversation.
  monkeypatch.setattr("sys.stdin", io.StringIO(f"{user}\nko ba\n"))
  assert generate.main(["--workdir", workdir, "--chat", "--max_new_tokens", "6"]) == 0
  first = lm.chat(user, max_new_tokens=6)
  second = lm.chat([{"role": "user", "content": user}, {"role": "assistant", "content": first},
                    {"role": "user", "content": "ko ba"}], max_new_tokens=6)
  assert capsys.readouterr().out.splitlines() == [f"assistant: {first}", f"assistant: {second}"]


@pytest.mark.extra("hf")
def test_a_lora_chat_run_merges_and_exports_with_its_template(pretrained, chat_files, tmp_path):
  """A LoRA chat run of the tiny GPT-2, merged and exported: transformers' tokenizer renders the
  recorded template to exactly the ids the run prompts with, and its model gives the merged
  run's logits (LoRA keeps the base's tied head, which Hugging Face's GPT-2 ties)."""
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  from roots_jax.runs import convert, load, lora_merge  # pylint: disable=g-import-not-at-top
  run, hf = str(tmp_path / "run"), str(tmp_path / "hf")
  finetune_lib.finetune(tiny_finetune_config(
      "chat", pretrained["decoder"], chat_files, task__max_len=48, task__target_len=16,
      finetune__lora__rank=4, finetune__lora__modules="all", train__steps=2,
      train__eval_every=2), run)
  merged = lora_merge.merge(run, str(tmp_path / "merged"))["out"]
  convert.export_hf(merged, hf)
  tokenizer = transformers.AutoTokenizer.from_pretrained(hf)
  assert tokenizer.chat_template == BUILTIN
  lm = LanguageModel.from_pretrained(merged)
  messages = [{"role": "user", "content": "What is 7 + 42?"}]
  ids = lm.chat_ids(messages)
  assert tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                       return_dict=True)["input_ids"] == ids

  loaded = load.load(merged)
  n = len(ids)
  batch = {"inputs": np.array([ids] * 8, np.int32), "segment_ids": np.ones((8, n), np.int32),
           "positions": np.tile(np.arange(n, dtype=np.int32), (8, 1))}  # a row per device
  with loaded.context():
    ours = np.asarray(loaded.model.apply({"params": loaded.params}, batch))[:1]
  model = transformers.AutoModelForCausalLM.from_pretrained(hf).eval()
  with torch.no_grad():
    theirs = model(input_ids=torch.tensor([ids])).logits.numpy()
  np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
