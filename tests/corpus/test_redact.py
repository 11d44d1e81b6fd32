"""Personal-data redaction: planted items are caught, look-alikes the BigScience rules spare are
kept, exact outputs written by hand; the step rewrites, counts and never removes."""

import json
import os
import pickle

import pytest
from datatrove.data import Document

from roots_jax.corpus import redact
from roots_jax.errors import ConfigError


@pytest.mark.parametrize("text, expected", [
    # Emails, the brackets around one included (they are no delimiter of the original), two with
    # one space between them (the original found only the first), a final "." left out.
    ("Write to jane.doe@example.com or <bob@mail.example.org>, and a@b.com c@d.com.",
     "Write to PI:EMAIL or PI:EMAIL, and PI:EMAIL PI:EMAIL."),
    # IPv4 (loopback and private ones too) and IPv6; "::" holds no digit.
    ("hosts 192.168.1.20, 127.0.0.1 and 2001:db8::1; wildcard ::",
     "hosts PI:IP_ADDRESS, PI:IP_ADDRESS and PI:IP_ADDRESS; wildcard ::"),
    # The first IPv6 alternative that fits stops at "2001:db8::ff00" (":" may follow an
    # address); the KEY pattern takes all of it, and the longer match wins.
    ("at 2001:db8::ff00:42:8329 now", "at PI:KEY now"),
    # Four numbers in 0..255 are an address, a version included; "10.11.12.13" reads as the
    # date 10.11.12 and is spared; three parts and ISO dates are neither.
    ("version 1.2.3.4 and 10.11.12.13, python 3.11.2 on 2023-01-15",
     "version PI:IP_ADDRESS and 10.11.12.13, python 3.11.2 on 2023-01-15"),
    # Keys: letters and digits alternating four times, or groups of digits (a card number).
    ("token sk-abc1def2ghi3jkl4mno5 end; card 4111 1111 1111 1111.",
     "token PI:KEY end; card PI:KEY."),
    # Handles need three characters after "@" and a delimiter before it; "user@" is neither.
    ("thanks @jane_doe and @bob! cc @ab, mail user@ later",
     "thanks PI:USER and PI:USER! cc @ab, mail user@ later"),
    # A key-like local part inside an email: one tag for the whole.
    ("from abc1def2ghi3jkl4@example.com", "from PI:EMAIL"),
    # Replaced where found: the same characters inside a longer word stay.
    ("1.2.3.4 x1.2.3.4", "PI:IP_ADDRESS x1.2.3.4"),
])
def test_redact_text(text, expected):
  assert redact.redact(text)[0] == expected


def test_decorators_are_not_handles():
  code = ("class A:\n"
          "    @property\n"
          "    def x(self):\n"
          '        """Ask @guido about it."""\n'
          "\n"
          "    @functools.lru_cache(maxsize=None)  # cached\n"
          "    def y(self): ...\n"
          ">>> @dataclass\n"
          "@john thanks!\n"
          "@john\n")
  text, counts = redact.redact(code)
  assert text == code.replace("@guido", "PI:USER").replace("@john thanks", "PI:USER thanks")
  assert counts == {"PI:USER": 2}


def test_counts_and_kinds():
  text = "a@b.com, x@y.org at 8.8.8.8 by @someone"
  assert redact.redact(text) == ("PI:EMAIL, PI:EMAIL at PI:IP_ADDRESS by PI:USER",
                                 {"PI:EMAIL": 2, "PI:IP_ADDRESS": 1, "PI:USER": 1})
  assert redact.redact(text, ("email",)) == ("PI:EMAIL, PI:EMAIL at 8.8.8.8 by @someone",
                                             {"PI:EMAIL": 2})
  assert redact.find(text, ("ip_address", "user")) == [(20, 27, "PI:IP_ADDRESS"),
                                                       (31, 39, "PI:USER")]


def test_step_rewrites_counts_and_keeps(tmp_path):
  step = pickle.loads(pickle.dumps(redact.Redactor(str(tmp_path), kinds=("email", "user"))))
  docs = [Document("mail a@b.com or c@d.com", "0", metadata={"language": "en"}),
          Document("nothing here 8.8.8.8", "1", metadata={"language": "en"}),
          Document("écrire à @marie", "2", metadata={"language": "fr"})]
  out = list(step.run(iter(docs)))
  assert [d.text for d in out] == ["mail PI:EMAIL or PI:EMAIL", "nothing here 8.8.8.8",
                                   "écrire à PI:USER"]
  assert [d.metadata.get("redactions") for d in out] == [{"PI:EMAIL": 2}, None, {"PI:USER": 1}]
  with open(os.path.join(tmp_path, "parts", "redact", "00000.json")) as f:
    part = json.load(f)
  assert part["counts"] == {"PI:EMAIL": 2, "PI:EMAIL/en": 2, "PI:USER": 1, "PI:USER/fr": 1}
  assert part["languages"]["en"] == {"docs_in": 2, "bytes_in": 43, "docs_out": 2,
                                     "bytes_out": 45, "removed": {}}
  assert part["languages"]["fr"]["docs_out"] == 1


def test_bad_kinds():
  for kinds in (("email", "phone"), ()):
    with pytest.raises(ConfigError, match="must be one or more of email, ip_address, key, user"):
      redact.Redactor("r", kinds=kinds)
