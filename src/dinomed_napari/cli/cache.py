"""`dinomed-napari cache`: what the feature cache holds, and pruning it."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from dinomed_napari.cli import args as A


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", type=Path, help="feature cache folder (default $DINOMED_CACHE or "
                        "~/.cache/dinomed-napari)")
    parser.add_argument("--prune", action="store_true",
                        help="remove stores chosen by --older-than, --max-size and --unreachable (stores "
                             "used in the last 24 h are always kept; see --dry-run)")
    parser.add_argument("--older-than", type=A.days, metavar="DAYS",
                        help="with --prune: stores not used for DAYS days")
    parser.add_argument("--max-size", type=A.size_bytes, metavar="SIZE",
                        help="with --prune: then the least recently used until the rest fit in SIZE "
                             "(e.g. 20G, 500M)")
    parser.add_argument("--unreachable", action="store_true",
                        help="with --prune: stores this version can never find again (older key versions, "
                             "unreadable or unfinished ones)")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --prune: say what would go, remove nothing")


def _size(n: float) -> str:
    power = 0 if n < 1024 else min(int(math.log(n, 1024)), 3)
    return f"{n:.0f} B" if power == 0 else f"{n / 1024**power:.1f} {'KMG'[power - 1]}B"


def _age(seconds: float) -> str:
    return f"{seconds / 86400:.1f} d" if seconds >= 86400 else f"{seconds / 3600:.1f} h"


def run(args: argparse.Namespace) -> int:
    from dinomed_napari.errors import DinomedError
    from dinomed_napari.features.cache import default_cache_dir
    from dinomed_napari.features.cache_admin import choose_removals, list_stores, remove_store

    folder = args.cache_dir or default_cache_dir()
    chosen_any = args.older_than is not None or args.max_size is not None or args.unreachable
    if args.prune and not chosen_any:
        raise DinomedError("cache --prune: say what to remove with --older-than DAYS, --max-size SIZE "
                           "and/or --unreachable")
    if not args.prune and (chosen_any or args.dry_run):
        raise DinomedError("cache: --older-than, --max-size, --unreachable and --dry-run go with --prune")
    stores = list_stores(folder)
    now = time.time()
    if not args.prune:
        for s in stores:
            state = f"{s.done}/{s.total} slices" if s.total else "-"
            print(f"{_size(s.nbytes):>9}  used {_age(now - s.last_used):>7} ago  {state:>14}  "
                  f"{s.path.name[:12]}  {s.label}")
        lost = sum(s.nbytes for s in stores if not s.reachable)
        print(f"{len(stores)} stores, {_size(sum(s.nbytes for s in stores))} in {folder}; "
              f"{_size(lost)} in stores this version never finds again")
        return 0
    go = choose_removals(stores, older_than_days=args.older_than, max_bytes=args.max_size,
                         unreachable=args.unreachable, now=now)
    freed, busy = 0, []
    for s in go:
        if args.dry_run or remove_store(s):
            freed += s.nbytes
            print(f"{'would remove' if args.dry_run else 'removed'} {s.path.name[:12]} "
                  f"({_size(s.nbytes)}, used {_age(now - s.last_used)} ago): {s.label}")
        else:
            busy.append(s)
    for s in busy:
        print(f"kept {s.path.name[:12]}: another process is computing into it")
    left = sum(s.nbytes for s in stores) - freed
    print(f"{'would free' if args.dry_run else 'freed'} {_size(freed)} in {len(go) - len(busy)} stores; "
          f"{_size(left)} left in {folder}")
    if args.max_size is not None and left > args.max_size:
        print("still over --max-size: the rest was used in the last 24 h or is in use")
    return 0
