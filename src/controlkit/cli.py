"""The `controlkit` command: one subcommand per stage, each thin over a library call.

Each stage keeps its own arguments in a small module with ``add_arguments(parser)`` and
``run(args) -> int``; those modules import nothing heavy at top level, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from controlkit import __version__
from controlkit.console import say
from controlkit.errors import UserError
from controlkit.stopping import EXIT_STOPPED, Stopped

COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("controlkit.train.command", "train a ControlNet on a Stable Diffusion base model"),
    "data": ("controlkit.data.command", "build a paired dataset (image, conditioning image, caption)"),
    "generate": ("controlkit.infer.generate_command", "generate images with a trained ControlNet"),
    "app": ("controlkit.infer.app_command", "a Gradio demo of a trained ControlNet"),
    "eval": (
        "controlkit.eval.command",
        "measure adherence, prompt fidelity and forgetting per checkpoint; pick the one to keep",
    ),
    "quickstart": ("controlkit.quickstart.command", "every stage on the embedded default, on a CPU"),
    "pretrain-demo-base": (
        "controlkit.pretrain.command",
        "train the small demo base model that quickstart ships",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="controlkit",
        description="Train your own ControlNet, end to end: build a paired dataset, train a ControlNet on a "
        "Stable Diffusion base model, generate with it, demo it. `controlkit COMMAND --help` explains "
        "each command's flags.",
    )
    parser.add_argument("--version", action="version", version=f"controlkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run, _prog=sub.prog)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        say(f"{args._prog}: error: {exc}")
        return 2
    except Stopped as exc:
        say(f"{args._prog}: stopped: {exc}")
        return EXIT_STOPPED
    except KeyboardInterrupt:
        print(f"{args._prog}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
