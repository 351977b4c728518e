"""The `jaxnas` command line: search, train, score, demo.

Errors a user can cause (bad flags or values, missing data, a finished run directory) end with one
line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

from jaxnas.config import PRESETS, apply_overrides, validate

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130
DEFAULT_TABLE = pathlib.Path(__file__).resolve().parents[2] / "shared/data/nb201/nats_tss_hp200_test_acc.csv"


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_USAGE, f"jaxnas: error: {message} (see `{self.prog} --help`)\n")


def _common(p):
    p.add_argument("--data", default="cifar10", help="cifar10 | cifar100 | imagenet16-120 | image folder | .tar.gz")
    p.add_argument("--out", required=True, help="run directory (created; rerun the same command to resume)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bench-table", help="NB201 table (CSV) to look the result up in")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run directory")
    p.add_argument("--devices", type=int, help="number of local devices to shard over (default: all)")
    p.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize() first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="field=value", help="override any config field")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxnas", description="One-shot NAS in JAX: architectures are arrays.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    s = sub.add_parser("search", help="run an architecture search")
    s.add_argument("--space", default="nb201", choices=["nb201"])
    s.add_argument("--method", default="rsps")
    s.add_argument("--preset", default="paper", choices=[k for k in PRESETS if not k.startswith("train")])
    _common(s)
    t = sub.add_parser("train", help="train one architecture from scratch (NB201 recipe)")
    t.add_argument("--arch", required=True, help="NB201 string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|")
    t.add_argument("--preset", default="paper", choices=["paper", "tiny"])
    _common(t)
    c = sub.add_parser("score", help="score architectures with training-free proxies (NASWOT, DAS, ...)")
    c.add_argument("--space", default="nb201", choices=["nb201"])
    c.add_argument("--proxy", default="naswot",
                   help="naswot | das | synflow | snip | grad_norm | jacov, or several, comma-separated")
    c.add_argument("--archs", default="all", help="all | N (a seeded sample of N) | file with one NB201 string per line")
    c.add_argument("--preset", default="paper", choices=[k for k in PRESETS if not k.startswith("train")])
    _common(c)
    d = sub.add_parser("demo", help="a short real search on CIFAR-10 (RSPS, tiny preset)")
    d.add_argument("--out", default="runs/demo")
    return parser


def _config(args):
    if args.command == "train":
        cfg = PRESETS["train-" + args.preset].replace(arch=args.arch)
    elif args.command == "score":
        from jaxnas.proxies import parse_proxies
        parse_proxies(args.proxy)
        cfg = PRESETS[args.preset].replace(method="score", space=args.space, proxy=args.proxy, score_archs=args.archs)
    else:
        cfg = PRESETS[args.preset].replace(method=args.method, space=args.space)
    cfg = validate(cfg.replace(data=args.data, seed=args.seed))
    return apply_overrides(cfg, args.overrides)


def _run(args) -> dict:
    from jaxnas import methods
    from jaxnas.train import sharding
    from jaxnas.train.loop import SearchRun

    if args.distributed:
        sharding.initialize_distributed()
    cfg = _config(args)
    table = None
    if args.bench_table:
        from jaxnas.bench import load_table
        table = load_table(args.bench_table)
    if args.command == "score" or cfg.method in methods.TRAINING_FREE:
        from jaxnas.proxies import run as proxy_run
        if args.command == "score":
            return proxy_run.score(cfg, args.out, overwrite=args.overwrite, bench_table=table,
                                   progress=not args.no_progress)
        return proxy_run.proxy_search(cfg, args.out, overwrite=args.overwrite, bench_table=table)
    run = SearchRun(cfg, args.out, method_cls=methods.get(cfg.method), overwrite=args.overwrite,
                    num_devices=args.devices, progress=not args.no_progress, bench_table=table)
    return run.run()


def _print_result(result: dict) -> None:
    shown = {k: v for k, v in result.items() if k != "candidates"}
    print(json.dumps(shown, indent=2))


def _demo(args) -> dict:
    table = str(DEFAULT_TABLE) if DEFAULT_TABLE.exists() else None
    ns = argparse.Namespace(command="search", method="rsps", space="nb201", preset="tiny", data="cifar10",
                            out=args.out, seed=0, bench_table=table, overwrite=True, devices=None,
                            distributed=False, no_progress=False, overrides=[])
    from jaxnas.data import resolve
    print(f"jaxnas demo: RSPS search, tiny preset, data {resolve('cifar10')}, run dir {args.out}", flush=True)
    return _run(ns)


def enable_compilation_cache() -> None:
    """Persist compiled XLA programs (XLA:CPU compiles take tens of seconds), so a resumed or
    repeated run starts at once. JAXNAS_XLA_CACHE picks the folder; an empty value disables it."""
    import jax
    folder = os.environ.get("JAXNAS_XLA_CACHE", str(pathlib.Path.home() / ".cache/jaxnas/xla"))
    if folder:
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    enable_compilation_cache()
    from jaxnas.data import DataError
    from jaxnas.train.loop import Interrupted, RunError
    try:
        result = _demo(args) if args.command == "demo" else _run(args)
    except Interrupted as err:
        print(f"jaxnas: interrupted: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, DataError, RunError, FileNotFoundError, FileExistsError) as err:
        if os.environ.get("JAXNAS_DEBUG"):
            raise
        print(f"jaxnas: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    _print_result(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
