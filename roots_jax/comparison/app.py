"""The rating page: a Starlette app over a comparison directory (the compare extra).

  GET  /                       the page (page.html)
  GET  /api/state?rater=NAME   {"done", "total", "pair": {"id", "prompt", "left", "right"} | null}
  POST /api/vote  {"rater", "pair", "choice"}  records the vote, answers the next state
  POST /api/undo  {"rater"}                    withdraws the rater's last vote, answers the state

The page sees texts and pair ids only; which model wrote which text stays on the server and in
votes.jsonl. Each rater goes through the pairs in the same order, from the first they have not
voted on, so reopening the page continues where they stopped."""

import importlib
import os

from roots_jax.comparison import pairs as pairs_lib
from roots_jax.comparison import store
from roots_jax.errors import ConfigError, RootsError

PAGE = os.path.join(os.path.dirname(__file__), "page.html")


def _require_extra() -> None:
  for name in ("starlette", "uvicorn"):
    try:
      importlib.import_module(name)
    except ImportError:
      raise ConfigError(f"the comparison page needs the compare extra ({name} is missing): "
                        "pip install -e '.[compare]'") from None


class Session:
  """The pairs, texts and votes log of one comparison directory."""

  def __init__(self, workdir: str):
    settings, self.texts = store.load_generations(workdir)
    self.prompts = settings["prompts"]
    self.pairs = pairs_lib.make_pairs([r["name"] for r in settings["runs"]], len(self.prompts),
                                      settings["seed"])
    self.by_id = {p["id"]: p for p in self.pairs}
    self.log = store.VoteLog(workdir)

  def state(self, rater: str) -> dict:
    voted = {v["pair"] for v in self.log.votes(rater)} if rater else set()
    pending = next((p for p in self.pairs if p["id"] not in voted), None)
    shown = None
    if pending is not None:
      shown = {"id": pending["id"], "prompt": self.prompts[pending["prompt"]],
               "left": self.texts[(pending["left"], pending["prompt"])],
               "right": self.texts[(pending["right"], pending["prompt"])]}
    return {"done": len(voted), "total": len(self.pairs), "pair": shown}

  def vote(self, rater: str, pair_id: str, choice: str) -> dict:
    if pair_id not in self.by_id:
      raise ConfigError(f"no pair {pair_id!r} in this comparison")
    self.log.vote(rater, self.by_id[pair_id], choice)
    return self.state(rater)

  def undo(self, rater: str) -> dict:
    self.log.undo(rater)
    return self.state(rater)


def make_app(workdir: str):
  """The Starlette app serving the rating page of `workdir`."""
  _require_extra()
  from starlette.applications import Starlette  # pylint: disable=g-import-not-at-top
  from starlette.requests import Request  # pylint: disable=g-import-not-at-top
  from starlette.responses import HTMLResponse, JSONResponse  # pylint: disable=g-import-not-at-top
  from starlette.routing import Route  # pylint: disable=g-import-not-at-top
  session = Session(workdir)
  with open(PAGE) as f:
    page = f.read()

  def answer(fn, *args):
    try:
      return JSONResponse(fn(*args))
    except RootsError as e:
      return JSONResponse({"error": str(e)}, status_code=400)

  async def index(request: Request):
    del request
    return HTMLResponse(page)

  async def state(request: Request):
    return answer(session.state, request.query_params.get("rater", "").strip())

  async def vote(request: Request):
    body = await request.json()
    return answer(session.vote, str(body.get("rater", "")).strip(), str(body.get("pair", "")),
                  str(body.get("choice", "")))

  async def undo(request: Request):
    body = await request.json()
    return answer(session.undo, str(body.get("rater", "")).strip())

  return Starlette(routes=[
      Route("/", index), Route("/api/state", state), Route("/api/vote", vote, methods=["POST"]),
      Route("/api/undo", undo, methods=["POST"])])


def serve(workdir: str, host: str = "127.0.0.1", port: int = 8000) -> None:
  """Serves the rating page until interrupted."""
  app = make_app(workdir)
  import uvicorn  # pylint: disable=g-import-not-at-top
  uvicorn.run(app, host=host, port=port, log_level="warning")
