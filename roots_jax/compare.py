"""Side-by-side comparison of models' generations by people (or a judge), rated Bradley-Terry.

  python -m roots_jax.compare --runs RUN_A,RUN_B[,...] --prompts FILE --workdir CMP
      [--max_new_tokens N] [--do_sample --temperature T --top_k K --top_p P] [--seed S]
      [--host 127.0.0.1] [--port 8000] [--no_serve]
  python -m roots_jax.compare serve --workdir CMP [--host H] [--port P]
  python -m roots_jax.compare report --workdir CMP [--raters R1,R2] [--bootstrap_rounds N]
      [--judge bleu|rouge|loglik [--references FILE] [--judge_run RUN]]

Generating (the first form, also spelled `generate`): each run (a run directory, a checkpoint
or a Hugging Face model; NAME=PATH names it, else its directory's name) continues each prompt
of FILE (one per line, or JSONL with a "prompt" field). CMP gets settings.json (the runs with
their step and kind, the prompts, the generation settings and seed) and generations.jsonl. A
rerun with the same settings reuses what is there (a model already generated is not loaded);
other settings are refused. Then the rating page is served (Ctrl-C stops it; `serve` alone
serves it again): a rater types a name and sees a prompt with two anonymous continuations
side by side, in an order and placement drawn from the seed, and votes A / B / tie / both bad
(keys 1/a, 2/b, 3/t, 4/x; u undoes). Each vote is appended to CMP/votes.jsonl as it is cast;
reopening the page continues where that rater stopped.

Reporting: a Bradley-Terry model fitted to the effective votes (ties half a win each, both-bad
votes left out), ratings on Chatbot Arena's Elo-like scale (400 log10, mean 1000) with 95%
bootstrap intervals, and the win-rate matrix: printed, and written to CMP as report.json,
ranking.png and win_rate.png. --judge first fills votes as rater judge:NAME, the
continuation with the higher score winning (equal: a tie): bleu or rouge (ROUGE-L) against
--references (one per prompt, in order: one per line, or JSONL with a "reference" field), or
loglik, the mean log-likelihood per token of the continuation given the prompt under
--judge_run (a stronger model). With --judge the report rates that judge's votes only, unless
--raters says otherwise. The page and the plots need the compare extra.
"""

import json
import logging
import os
import sys

from roots_jax import host_memory

if __name__ == "__main__":  # first: glibc reads its tunables when the process starts
  host_memory.tune_malloc()

from roots_jax import cli
from roots_jax import metrics
from roots_jax.api import LanguageModel
from roots_jax.comparison import app as app_lib
from roots_jax.comparison import pairs as pairs_lib
from roots_jax.comparison import report as report_lib
from roots_jax.comparison import store
from roots_jax.errors import ConfigError, DataError

log = logging.getLogger("roots_jax")
COMMANDS = ("generate", "serve", "report")


def _read_texts(path: str, field: str, what: str) -> list[str]:
  """The texts of FILE: one per line, or a JSONL file's `field`."""
  if not os.path.isfile(path):
    raise ConfigError(f"--{what} {path} is not a file")
  with open(path) as f:
    lines = [l for l in f.read().splitlines() if l.strip()]
  if not path.endswith(".jsonl"):
    texts = lines
  else:
    texts = []
    for number, line in enumerate(lines, 1):
      try:
        texts.append(json.loads(line)[field])
      except (json.JSONDecodeError, KeyError, TypeError):
        raise DataError(f"{path} line {number} is not a JSON object with a {field!r} "
                        "field") from None
  if not texts:
    raise DataError(f"{path} has no {what}")
  return texts


def _runs(spec: str) -> list[dict]:
  """--runs NAME=PATH,PATH,... -> [{"name", "path"}] with distinct names."""
  runs = []
  for item in filter(None, (s.strip() for s in spec.split(","))):
    name, _, path = item.rpartition("=")
    path = os.path.abspath(path)
    runs.append({"name": name or os.path.basename(path.rstrip(os.sep)), "path": path})
  names = [r["name"] for r in runs]
  if len(runs) < 2:
    raise ConfigError("--runs needs at least two runs to compare: --runs RUN_A,RUN_B")
  if len(set(names)) < len(names):
    raise ConfigError(f"--runs gives two models the name of {', '.join(names)}: name them, "
                      "--runs NAME_A=PATH,NAME_B=PATH")
  return runs


def _settings(args) -> dict:
  return {"runs": _runs(args.runs), "prompts": _read_texts(args.prompts, "prompt", "prompts"),
          "seed": args.seed,
          "generation": {"max_new_tokens": args.max_new_tokens, "do_sample": args.do_sample,
                         "temperature": args.temperature, "top_k": args.top_k,
                         "top_p": args.top_p}}


def _same_request(stored: dict, requested: dict) -> bool:
  names = lambda s: [(r["name"], r["path"]) for r in s["runs"]]
  return names(stored) == names(requested) and all(
      stored[k] == requested[k] for k in ("prompts", "seed", "generation"))


def generate(args) -> None:
  """Generates what CMP lacks, then serves the page unless --no_serve."""
  requested = _settings(args)
  os.makedirs(args.workdir, exist_ok=True)
  path = os.path.join(args.workdir, store.SETTINGS)
  settings = requested
  if os.path.exists(path):
    settings = store.read_json(path)
    if not _same_request(settings, requested):
      raise ConfigError(f"{args.workdir} holds a comparison with other runs, prompts or "
                        "generation settings: use another --workdir, or the settings in "
                        f"{path}")
  store.write_json(path, settings)
  generations = os.path.join(args.workdir, store.GENERATIONS)
  done = {(r["model"], r["prompt"]) for r in store.read_jsonl(generations)}
  prompts = settings["prompts"]
  for run in settings["runs"]:
    if all((run["name"], i) in done for i in range(len(prompts))):
      continue
    lm = LanguageModel.from_pretrained(run["path"])
    lm.check_generates()
    log.info("generating with %s (%s step %d)", run["name"], run["path"], lm.step)
    texts = lm.generate(prompts, seed=settings["seed"], **settings["generation"])
    store.append_jsonl(generations, [{"model": run["name"], "prompt": i, "text": t[0]}
                                     for i, t in enumerate(texts)])
    run.update(step=int(lm.step), kind=lm.config.kind, family=lm.family)
    store.write_json(path, settings)
    del lm
  pairs = pairs_lib.make_pairs([r["name"] for r in settings["runs"]], len(prompts),
                               settings["seed"])
  log.info("%d pairs to judge in %s", len(pairs), os.path.abspath(args.workdir))
  if not args.no_serve:
    _serve(args)


def _serve(args) -> None:
  log.info("rating page at http://%s:%d/ (Ctrl-C stops it)", args.host, args.port)
  app_lib.serve(args.workdir, host=args.host, port=args.port)


def _judge_scores(args, settings: dict, texts: dict) -> dict[tuple[str, int], float]:
  """{(model, prompt index): the judge's score of that continuation}, higher is better."""
  prompts, models = settings["prompts"], [r["name"] for r in settings["runs"]]
  keys = [(m, i) for m in models for i in range(len(prompts))]
  if args.judge == "loglik":
    if not args.judge_run:
      raise ConfigError("--judge loglik needs --judge_run RUN, the model that scores")
    judge = LanguageModel.from_pretrained(args.judge_run)
    scores = judge.score([prompts[i] for _, i in keys], targets=[texts[k] for k in keys])
    return {k: s["log_likelihood"] / max(s["num_tokens"], 1) for k, s in zip(keys, scores)}
  if not args.references:
    raise ConfigError(f"--judge {args.judge} needs --references FILE, one reference "
                      "continuation per prompt")
  references = _read_texts(args.references, "reference", "references")
  if len(references) != len(prompts):
    raise DataError(f"{args.references} has {len(references)} references for "
                    f"{len(prompts)} prompts")
  if args.judge == "bleu":
    return {k: metrics.corpus_bleu([texts[k]], [references[k[1]]])["bleu"] for k in keys}
  return {k: metrics.rouge([texts[k]], [references[k[1]]])["rougeL"] for k in keys}


def _fill_judge_votes(args, settings: dict, texts: dict, votes_log: store.VoteLog) -> str:
  """Votes as rater judge:NAME on the pairs it has not judged; the rater."""
  scores = _judge_scores(args, settings, texts)
  rater = f"judge:{args.judge}"
  for pair in pairs_lib.make_pairs([r["name"] for r in settings["runs"]],
                                   len(settings["prompts"]), settings["seed"]):
    left, right = (scores[(pair[s], pair["prompt"])] for s in ("left", "right"))
    votes_log.vote(rater, pair, "left" if left > right else "right" if right > left else "tie")
  return rater


def report(args) -> None:
  settings, texts = store.load_generations(args.workdir)
  votes_log = store.VoteLog(args.workdir)
  raters = args.raters.split(",") if args.raters else None
  if args.judge:
    judge_rater = _fill_judge_votes(args, settings, texts, votes_log)
    raters = raters or [judge_rater]
  votes = [v for v in votes_log.votes() if raters is None or v["rater"] in raters]
  result = report_lib.build(votes, [r["name"] for r in settings["runs"]],
                            rounds=args.bootstrap_rounds, seed=args.seed)
  print(report_lib.format_table(result))
  store.write_json(os.path.join(args.workdir, "report.json"), result)
  plots = report_lib.plot(result, args.workdir)
  log.info("wrote report.json%s in %s", "".join(f", {os.path.basename(p)}" for p in plots),
           os.path.abspath(args.workdir))


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="python -m roots_jax.compare", description=__doc__)
  commands = p.add_subparsers(dest="command", required=True)

  def serving(sub):
    sub.add_argument("--host", default="127.0.0.1",
                     help="address the page listens on (default 127.0.0.1: this machine only)")
    sub.add_argument("--port", type=int, default=8000, help="port of the page (default 8000)")

  gen = commands.add_parser("generate", help="generate the continuations, then serve the page",
                            description="Generates each run's continuation of each prompt, "
                            "then serves the rating page.")
  gen.add_argument("--runs", required=True, metavar="RUN_A,RUN_B[,...]",
                   help="the models: run directories, checkpoints or Hugging Face model "
                   "directories, each optionally NAME=PATH")
  gen.add_argument("--prompts", required=True, metavar="FILE",
                   help="one prompt per line, or JSONL with a \"prompt\" field")
  gen.add_argument("--workdir", required=True, metavar="CMP", help="the comparison directory")
  gen.add_argument("--max_new_tokens", type=int, default=64, help="default 64")
  gen.add_argument("--do_sample", action="store_true", help="sample (default: greedy)")
  gen.add_argument("--temperature", type=float, default=1.0)
  gen.add_argument("--top_k", type=int, default=0)
  gen.add_argument("--top_p", type=float, default=1.0)
  gen.add_argument("--seed", type=int, default=0,
                   help="sampling, and the order and sides of the pairs (default 0)")
  gen.add_argument("--no_serve", action="store_true", help="generate only")
  serving(gen)
  gen.set_defaults(run_command=generate)

  srv = commands.add_parser("serve", help="serve the rating page of a comparison directory",
                            description="Serves the rating page of CMP.")
  srv.add_argument("--workdir", required=True, metavar="CMP", help="the comparison directory")
  serving(srv)
  srv.set_defaults(run_command=_serve)

  rep = commands.add_parser("report", help="rate the models from the votes",
                            description="Fits Bradley-Terry ratings to the votes; prints and "
                            "writes the ranking and the win-rate matrix.")
  rep.add_argument("--workdir", required=True, metavar="CMP", help="the comparison directory")
  rep.add_argument("--raters", metavar="R1,R2", help="rate these raters' votes only")
  rep.add_argument("--bootstrap_rounds", type=int, default=1000, metavar="N",
                   help="resamples for the 95%% intervals (default 1000)")
  rep.add_argument("--seed", type=int, default=0, help="of the resamples (default 0)")
  rep.add_argument("--judge", choices=("bleu", "rouge", "loglik"),
                   help="first fill votes with this judge")
  rep.add_argument("--references", metavar="FILE",
                   help="bleu, rouge: one reference per prompt (lines, or JSONL \"reference\")")
  rep.add_argument("--judge_run", metavar="RUN", help="loglik: the model that scores")
  rep.set_defaults(run_command=report)
  return p


def main(argv: list[str] | None = None) -> int:
  cli.log_to_console()
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
    argv.insert(0, "generate")  # the plain `compare --runs ...` spelling

  def command():
    args = parser().parse(argv)
    args.run_command(args)

  return cli.run(command)


if __name__ == "__main__":
  sys.exit(main())
