"""`dinomed-napari` command line: one sub-module per command, imported only when that command runs."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module in dinomed_napari.cli, one-line help). Each module defines
# ``configure(parser: argparse.ArgumentParser) -> None`` and ``run(args: argparse.Namespace) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "extract": ("extract", "compute (or reuse cached) DINOv3 patch features of a volume"),
    "models": ("models", "list the DINOv3 backbones, their sizes and which weights are available"),
    "pca": ("pca", "PCA feature maps (RGB and raw components) on the image grid"),
    "affinity": ("affinity", "feature affinity maps along x, y, z"),
    "isolate": ("isolate", "threshold tumour isolation from a seed point"),
    "segment": ("segment", "few-click segmentation from a scribble label image"),
    "bench": ("bench", "score backbones and settings headless on cases with masks"),
    "view": ("view", "open a volume in napari with the dinomed widgets docked"),
    "cache": ("cache", "list the feature cache's stores, or prune old, unreachable or surplus ones"),
}


def build_parser() -> argparse.ArgumentParser:
    from dinomed_napari import __version__

    parser = argparse.ArgumentParser(prog="dinomed-napari", description=__doc__)
    parser.add_argument("--version", action="version", version=f"dinomed-napari {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        p.set_defaults(_configured=False)
    return parser


def _load(module: str):
    return importlib.import_module(f"dinomed_napari.cli.{module}")


def run_command(module, args: argparse.Namespace) -> int:
    """Run one command: an expected failure (bad input, OS error, memory) is one line on stderr and exit
    code 2, Ctrl-C exit 130; a traceback only with ``--debug``."""
    from dinomed_napari.cli.failures import one_line
    from dinomed_napari.errors import ExtractionCancelled

    try:
        return int(module.run(args) or 0)
    except ExtractionCancelled as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if getattr(args, "debug", False):
            raise
        message, code = one_line(exc)
        print(message, file=sys.stderr)
        return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dinomed-napari`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--debug"]:  # `dinomed-napari --debug CMD ...` works like `CMD ... --debug`
        argv = [*argv[1:], "--debug"]
    parser = build_parser()
    # Parse the command name first, then let its module add its own options (keeps start-up fast).
    if argv and argv[0] in COMMANDS:
        name = argv[0]
        module = _load(COMMANDS[name][0])
        sub = argparse.ArgumentParser(prog=f"dinomed-napari {name}", description=COMMANDS[name][1])
        module.configure(sub)
        sub.add_argument("--debug", action="store_true",
                         help="on an error, show the full Python traceback instead of one line")
        args = sub.parse_args(argv[1:])
        return run_command(module, args)
    parser.parse_args(argv)
    parser.print_help()
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
