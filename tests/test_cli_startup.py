"""`--help` of every command and a mistake in the arguments or the config answer without
importing torch, timm or matplotlib (each would cost seconds before the answer)."""

import json
import subprocess
import sys

HEAVY = ["torch", "timm", "matplotlib"]
# Runs `cnnvit <argv>` for each case in one fresh interpreter; prints [argv, exit code, heavy
# modules imported so far] per case, as JSON.
PROBE = """
import argparse, contextlib, io, json, sys
from cnnvit.cli import build_parser, main

def commands(parser, prefix):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield [*prefix, name]
                yield from commands(sub, [*prefix, name])

cases = [["--help"]] + [[*c, "--help"] for c in commands(build_parser(), [])] + CASES
results = []
for argv in cases:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    results.append([argv, code, [m for m in HEAVY if m in sys.modules]])
print(json.dumps(results))
"""
MISTAKES = [
    (["train", "--epochs", "x"], 2),
    (["train", "--set", "no_such_key=1"], 2),
    (["train", "--set", "epochs=many"], 2),
    (["train", "--set", "nan_policy=sometimes"], 2),
    (["run", "--set", "no_such_key=1"], 2),
    (["run", "--set", "vit-small-input.epochs=many"], 2),
    (["run", "--seeds", "1,x"], 2),
    (["evaluate", "somewhere", "--split", "bogus"], 2),
    (["data", "synth", "--out", "x.npz", "--shape", "2x2"], 2),
    (["no-such-command"], 2),
    (["train", "--keys"], 0),
]


def _probe(cases):
    code = PROBE.replace("CASES", repr(cases)).replace("HEAVY", repr(HEAVY))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(proc.stdout)


def test_help_and_mistakes_answer_without_torch_timm_or_matplotlib():
    results = _probe([argv for argv, _ in MISTAKES])
    helps, mistakes = results[:-len(MISTAKES)], results[-len(MISTAKES):]
    assert len(helps) >= 14  # cnnvit, 9 commands, 4 data sub-commands
    assert {tuple(argv[:-1]) for argv, _, _ in helps} >= {(), ("train",), ("run",),
                                                          ("data", "synth")}
    for argv, code, heavy in helps:
        assert code == 0 and heavy == [], argv
    for (argv, code, heavy), (_, expected) in zip(mistakes, MISTAKES, strict=True):
        assert (code, heavy) == (expected, []), argv
