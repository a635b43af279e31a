"""Short engine questions the web tier asks without importing torch into its own process (a web worker
would grow by about 500 MB): `python -m workers.engine.call <question>` reads JSON arguments on stdin and
writes a JSON answer on stdout. An answer {"error": "..."} is a refusal the user should read (bad input);
anything else going wrong exits non-zero. backend/core/engine.py is the caller.
"""
from __future__ import annotations

import json
import sys
from typing import Callable

QUESTIONS: dict[str, Callable[..., dict]] = {}


class Refusal(ValueError):
    """The question's input cannot be answered; the message says why and what to do."""


def question(function: Callable[..., dict]) -> Callable[..., dict]:
    QUESTIONS[function.__name__] = function
    return function


# Questions whose module needs no torch: asked often (an uploaded file is checked as soon as it is chosen), they
# load only their own module, not the zoo's (whose summary imports torch: about 2 s of the answer).
LIGHT_QUESTIONS = {"read_upload": "workers.engine.uploaded"}


def load_questions(name: str | None = None) -> None:
    """The modules that register questions (imported here, not at the top, so `call` stays importable without torch);
    for a light question, its module alone."""
    if name in LIGHT_QUESTIONS:
        import importlib

        importlib.import_module(LIGHT_QUESTIONS[name])
        return
    from . import uploaded  # noqa: F401
    from .zoo import imports, questions, summary  # noqa: F401


def main() -> int:
    # Run as __main__, this file is a second copy of the module: the registered questions are the importable one's.
    from workers.engine import call

    name = sys.argv[1] if len(sys.argv) > 1 else ""
    call.load_questions(name)
    if name not in call.QUESTIONS:
        print(f"no engine question {name!r}; there are {', '.join(sorted(call.QUESTIONS))}", file=sys.stderr)
        return 2
    try:
        answer = call.QUESTIONS[name](**json.loads(sys.stdin.read() or "{}"))
    except call.Refusal as refusal:
        answer = {"error": str(refusal)}
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
