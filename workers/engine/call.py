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


def load_questions() -> None:
    """The modules that register questions (imported here, not at the top, so `call` stays importable without torch)."""
    from .zoo import imports, questions, summary  # noqa: F401


def main() -> int:
    # Run as __main__, this file is a second copy of the module: the registered questions are the importable one's.
    from workers.engine import call

    call.load_questions()
    name = sys.argv[1] if len(sys.argv) > 1 else ""
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
