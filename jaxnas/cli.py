"""The `jaxnas` command line: search, train, score, plot, demo.

Errors a user can cause (bad flags or values, missing data, a finished run directory, an
unwritable --out) end with one line on stderr and a non-zero exit, never a traceback; Ctrl-C or
SIGTERM anywhere exits 130 and says how to resume. `field=value` overrides may go anywhere after
the command.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import signal
import sys

import jaxnas
from jaxnas import methods, registry, spaces  # lazy packages: no JAX until a space or method is used
from jaxnas.config import PRESET_HELP, PRESETS, apply_overrides, preset, validate

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130
TABLE_NAME = "shared/data/nb201/nats_tss_hp200_test_acc.csv"
DEMO_OUT = "runs/demo"
OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=")
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_USAGE, f"jaxnas: error: {message} (see `{self.prog} --help`)\n")


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def _common(p):
    p.add_argument("--data", default="cifar10",
                   help="cifar10 | cifar100 | imagenet16-120 | image folder | .tar.gz")
    p.add_argument("--out", required=True, help="run directory (created; rerun the same command to resume)")
    p.add_argument("--seed", type=_count(0), default=0)
    p.add_argument("--bench-table", help="NB201 table (CSV) to look the result up in")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the jaxnas run in --out (only what jaxnas wrote there is removed)")
    p.add_argument("--devices", type=_count(1),
                   help="number of local devices to shard training over (default: all)")
    p.add_argument("--distributed", action="store_true", help="call jax.distributed.initialize() first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config and an estimate of steps and time, then exit")
    p.add_argument("overrides", nargs="*", metavar="section.field=value",
                   help="override any config field, e.g. train.epochs=20 (see --print-config), anywhere on "
                        "the line")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxnas", description="One-shot NAS in JAX: architectures are arrays.")
    parser.add_argument("--version", action="version", version=f"jaxnas {jaxnas.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    search_presets = [k for k in PRESETS if not k.startswith("train")]
    search_methods = registry.search_methods()
    methods = "\n".join(f"  {k:10s} {registry.METHODS[k].help}" for k in search_methods)
    spaces = list(registry.SPACES)
    s = sub.add_parser("search", help="run an architecture search",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=f"methods:\n{methods}\n\npresets: paper (the published protocol; days on a "
                              "CPU), tiny (minutes on 2 CPU cores)")
    s.add_argument("--space", default=registry.DEFAULT_SPACE, choices=spaces,
                   help=f"{' | '.join(spaces)} (`jaxnas list` describes each)")
    s.add_argument("--method", default=registry.DEFAULT_METHOD,
                   help=f"{' | '.join(search_methods)} (listed below)")
    s.add_argument("--preset", default="paper", choices=search_presets)
    _common(s)
    t = sub.add_parser("train", help="train one architecture from scratch (NB201 recipe)")
    arch = t.add_mutually_exclusive_group(required=True)
    arch.add_argument("--arch", help="NB201 string |op~0|+|op~0|op~1|+|op~0|op~1|op~2| or NB201 index, or a "
                                     "finished search's run directory / its result.json")
    arch.add_argument("--arch-from", metavar="RUN", help="train the architecture a finished search found")
    t.add_argument("--space", default=None, choices=spaces,
                   help=f"the architecture's space (default: the run's, with --arch-from; else "
                        f"{registry.DEFAULT_SPACE})")
    t.add_argument("--preset", default="paper", choices=["paper", "tiny"])
    _common(t)
    c = sub.add_parser("score", help="score architectures with training-free proxies (NASWOT, DAS, ...)")
    c.add_argument("--space", default=registry.DEFAULT_SPACE, choices=spaces)
    c.add_argument("--proxy", default="naswot",
                   help=f"{' | '.join(registry.PROXIES)}, or several, comma-separated (`jaxnas list` "
                        "describes each)")
    c.add_argument("--archs", default="all",
                   help="all | N (a seeded sample of N) | file with one NB201 string per line")
    c.add_argument("--preset", default="paper", choices=search_presets)
    _common(c)
    p = sub.add_parser("plot", help="plot a run: learning curves, or scores against the bench table (PNGs)")
    p.add_argument("run", help="a run directory")
    p.add_argument("--bench-table", help="NB201 table for a score run (default: the shared table if present)")
    sub.add_parser("list", help="the spaces, methods, proxies and presets, one line each")
    d = sub.add_parser("demo", help="two short real searches on CIFAR-10 (training-free pruning, then RSPS)")
    d.add_argument("--out", default=DEMO_OUT,
                   help=f"folder of the two runs (default {DEMO_OUT}, replaced on every demo)")
    d.add_argument("--overwrite", action="store_true",
                   help="replace the jaxnas run in a --out of your choice")
    parser.subcommands = sub.choices
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """Parse the command line; `field=value` overrides are collected wherever they stand."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    sub = parser.subcommands[args.command]
    unknown = [x for x in extra if not OVERRIDE.match(x)]
    if unknown:
        sub.error(f"unrecognized arguments: {' '.join(unknown)}")
    overrides = list(getattr(args, "overrides", []) or []) + [x for x in extra if OVERRIDE.match(x)]
    if overrides and not hasattr(args, "overrides"):
        sub.error(f"`jaxnas {args.command}` takes no field=value overrides, got {' '.join(overrides)}")
    args.overrides = overrides
    return args


def train_arch(args) -> tuple[str, dict]:
    """The architecture string `jaxnas train` trains (--arch: a string, run directory or result.json;
    or --arch-from RUN) and the config fields of its space ({} for a string; a run's `space` and the
    fields of its section that the architecture's shape depends on, `Space.arch_fields`: the
    rest of the section, e.g. a search's BN settings, is the training recipe's)."""
    spec, flag = (args.arch_from, "--arch-from") if args.arch_from else (args.arch, "--arch")
    if not spec.strip():
        raise ValueError(f"{flag} is empty; give an architecture string, an NB201 index, or a finished "
                         "search's run directory / result.json")
    path = pathlib.Path(spec).expanduser()
    if args.arch_from or path.exists():
        result = path / "result.json" if path.is_dir() else path
        if not result.exists() and (result.parent / "summary.json").exists():
            raise ValueError(f"{flag} {spec} is a `jaxnas score` run: it scores architectures and picks "
                             "none; train one of its scores.csv by --arch '<NB201 string>' "
                             f"({_best_scored(result.parent)})")
        try:
            arch = json.loads(result.read_text())["arch"]
        except FileNotFoundError:
            raise ValueError(f"{flag} {spec}: no {result} (has the search finished?)") from None
        except (OSError, ValueError, KeyError, TypeError):
            raise ValueError(f"{flag} {spec}: {result} is not a jaxnas result.json with an 'arch'") from None
        try:
            run_cfg = json.loads((result.parent / "config.json").read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError):
            return arch, {}
        name = run_cfg.get("space", registry.DEFAULT_SPACE)
        section = run_cfg.get(name, {})
        shape = {f"{name}.{k}": section[k] for k in spaces.get(name).arch_fields if k in section}
        return arch, {"space": name, **shape}
    return spec, {}


def _best_scored(run: pathlib.Path) -> str:
    """A score run's best architecture by its first score column, for an error message."""
    from jaxnas import search
    from jaxnas.rundir import read_scores
    try:
        header, rows = read_scores(run / "scores.csv")
        best = rows[search.best_by_score([float(r[header[2]]) for r in rows])]
        return f"its best by {header[2]}: {best['arch']}"
    except (OSError, ValueError, IndexError, KeyError, RuntimeError):
        return "its scores.csv lists them"


def _check_train_arch(cfg, flag: str):
    """cfg with its architecture string checked and normalised by its space; a plain number is an
    index into a space that lists its architectures (NB201's benchmark order)."""
    from jaxnas import search
    space = spaces.get(cfg.space, cfg)
    text = cfg.arch.strip()
    if text.isdigit():
        if not spaces.has(space, "enumerate"):
            raise ValueError(f"{flag} {text}: space {space.name!r} has no architecture indices; give its "
                             "string form")
        if int(text) >= space.size:
            raise ValueError(f"{flag} {text}: an index of space {space.name!r} is in [0, {space.size - 1}]")
        return cfg.replace(arch=space.to_string(search.take(space.enumerate(), int(text))))
    try:
        return cfg.replace(arch=space.to_string(space.from_string(cfg.arch)))
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from None


def _config(args):
    if args.command == "train":
        if any(o.startswith(("method=", "arch=")) for o in args.overrides):
            raise ValueError("jaxnas train trains one architecture: method= and arch= overrides do not apply "
                             "(give the architecture with --arch or --arch-from; search with jaxnas search)")
        arch, fields = train_arch(args)
        if args.space and fields.get("space") not in (None, args.space):
            raise ValueError(f"--space {args.space}: the run searched space {fields['space']!r}, so its "
                             f"architecture is one of {fields['space']!r}; leave --space out")
        if args.space:
            fields = {**fields, "space": args.space}
        space = fields.get("space", registry.DEFAULT_SPACE)
        cfg = preset("train-" + args.preset, None, space).replace(arch=arch).set(fields)
    elif args.command == "score":
        from jaxnas.proxies.scoring import check_space, parse_proxies
        parse_proxies(args.proxy)
        check_space(spaces.get(args.space))
        cfg = PRESETS[args.preset].replace(method="score", space=args.space).set({"proxy.names": args.proxy,
                                                                                   "proxy.archs": args.archs})
    else:
        cfg = preset(args.preset, args.method, args.space)
    cfg = apply_overrides(validate(cfg.replace(data=args.data, seed=args.seed)), args.overrides)
    if args.bench_table:
        if not spaces.has(spaces.get(cfg.space, cfg), "bench_index"):
            raise ValueError("--bench-table: benchmark tables index a space's architectures "
                             f"(`bench_index`); space {cfg.space!r} has none")
        if not pathlib.Path(args.bench_table).expanduser().is_file():
            raise ValueError(f"--bench-table {args.bench_table}: no such file (expected an NB201-style CSV)")
    if args.command == "train":
        cfg = _check_train_arch(cfg, "--arch-from" if args.arch_from else "--arch")
    if args.command != "score":
        methods.get(cfg.method).check(cfg, spaces.get(cfg.space, cfg))
    return cfg


def _training_free(args, cfg) -> bool:
    return args.command == "score" or not methods.get(cfg.method).trains


def _candidates(args, cfg):
    """The architectures a run may look up in the bench table (score: those it scores)."""
    space = spaces.get(cfg.space, cfg)
    if args.command == "score":
        from jaxnas.proxies.run import select_archs
        return select_archs(cfg.proxy.archs, cfg.seed, space), "architectures to score"
    if args.command == "train":
        return space.from_string(cfg.arch)[None], "architecture to train"
    return space.enumerate(), f"architectures of the {space.name} space"


def _estimate(args, cfg, candidates) -> dict:
    from jaxnas.estimate import describe, estimate
    if not _training_free(args, cfg):
        est = estimate(cfg, method=methods.get(cfg.method))
    else:
        from jaxnas.proxies.run import score_proxies
        proxies = score_proxies(cfg) if args.command == "score" else methods.get(cfg.method).proxies(cfg)
        est = estimate(cfg, proxies, len(candidates[0]) if args.command == "score"
                       else methods.get(cfg.method).cost_in_candidates(cfg))
    est["duration_2_core_cpu"] = describe(est["seconds"])
    return est


def _warn_if_long(est: dict) -> None:
    """On CPU, say before starting when a run will take long (the `paper` preset, `--archs all`)."""
    import jax
    if jax.default_backend() == "cpu" and est["seconds"] is not None and est["seconds"] > 600:
        size = f"{est['steps']} steps" if "steps" in est else f"{est['architectures']} architectures"
        print(f"jaxnas: note: {size}, estimated {est['duration_2_core_cpu']} on 2 CPU cores (a rough model, "
              "benchmarks/BENCHMARKS.md); --preset tiny or --archs N is CPU-sized; Ctrl-C stops, rerun "
              "resumes",
              file=sys.stderr, flush=True)


def _run(args) -> dict:
    from jaxnas.train import sharding

    if args.distributed and not args.print_config:  # before anything touches a JAX backend
        sharding.initialize_distributed()
    cfg = _config(args)
    # read once: what the bench table must cover, and what a score run scores
    candidates = _candidates(args, cfg) if args.bench_table or args.command == "score" else None
    if args.print_config:
        print(json.dumps({"command": args.command, "config": json.loads(cfg.to_json()),
                          "estimate": _estimate(args, cfg, candidates)}, indent=2))
        return None
    if args.devices is not None and _training_free(args, cfg):
        raise ValueError("--devices: training-free scoring runs on one device (candidates are vmapped in "
                         "chunks, eval_chunk_size=); leave --devices out")
    from jaxnas.rundir import check_run_dir
    check_run_dir(args.out, cfg, args.overwrite, "summary.json" if args.command == "score" else "result.json")
    table = None
    if args.bench_table:
        from jaxnas.bench import load_table
        table = load_table(args.bench_table)
        table.check_covers(*candidates)
    _warn_if_long(_estimate(args, cfg, candidates))
    if args.command == "score":
        from jaxnas.proxies import run as proxy_run
        return proxy_run.score(cfg, args.out, overwrite=args.overwrite, bench_table=table,
                               progress=not args.no_progress)
    from jaxnas.train.loop import SearchRun
    run = SearchRun(cfg, args.out, method_cls=methods.get(cfg.method), overwrite=args.overwrite,
                    num_devices=args.devices, progress=not args.no_progress, bench_table=table)
    return run.run()


def _plot(args) -> dict:
    from jaxnas.data import find_shared
    from jaxnas.plot import plot_run
    table_path = args.bench_table or find_shared(TABLE_NAME)
    table = None
    if table_path is not None and (pathlib.Path(args.run) / "scores.csv").exists():
        from jaxnas.bench import load_table
        table = load_table(table_path)
    return {"plots": [str(p) for p in plot_run(args.run, bench_table=table)]}


def listing() -> str:
    """`jaxnas list`: every registered space, method, proxy and preset with one line each."""

    def block(title, items):
        return f"{title}:\n" + "".join(f"  {k:12s} {v}\n" for k, v in items.items())

    return "\n".join([block("spaces", {k: e.help for k, e in registry.SPACES.items()}),
                      block("methods (jaxnas search --method)",
                            {k: registry.METHODS[k].help for k in registry.search_methods()}),
                      block("proxies (jaxnas score --proxy)", registry.PROXIES),
                      block("presets (--preset)", PRESET_HELP)])


SHOWN_CHARS = 240  # a list longer than this (as JSON) is summarised on stdout


def _brief(value):
    """`value` with every long list (candidates, rounds, histograms) replaced by its length."""
    if isinstance(value, dict):
        return {k: _brief(v) for k, v in value.items()}
    if isinstance(value, list) and len(json.dumps(value)) > SHOWN_CHARS:
        return f"({len(value)} entries: in the run directory's result.json / summary.json)"
    return value


def _print_result(result: dict) -> None:
    """The result on stdout with long lists summarised; the run directory holds them whole."""
    print(json.dumps(_brief({k: v for k, v in result.items() if k != "candidates"}), indent=2))


# The demo's two searches: (folder, method, one-line description, overrides); both at the tiny preset.
# The training-free one prunes (issue 21: at the tiny preset, seeds 0-7, 93.52 +- 0.19 against DAS
# min_dist over 100 candidates' 93.31 +- 0.62, in the same ~13 s; README "What the demo shows").
DEMO_RUNS = (
    ("training-free", "prune", ("training-free search: TE-NAS-style pruning of the whole cell by NASWOT + "
                                "#params, no training"), []),
    ("rsps", "rsps", "weight-sharing search: RSPS, a C=8, N=1 supernet trained 3 epochs on 3,000 images", []),
)


def _demo(args) -> None:
    """Two real searches on CIFAR-10 at CPU size, each with its NB201 ground truth when the table
    is present: what jaxnas does best on 2 cores, then the short weight-sharing search."""
    from jaxnas.data import find_shared, resolve
    from jaxnas.rundir import RunError, is_jaxnas_run, remove_run
    out = pathlib.Path(args.out)
    table = find_shared(TABLE_NAME)
    # the demo replaces its own default folder on every run; a folder the user names only with --overwrite
    overwrite = args.overwrite or os.path.normpath(args.out) == os.path.normpath(DEMO_OUT)
    if is_jaxnas_run(out):  # a single run (e.g. an older demo's) where the demo puts its two runs
        if not overwrite:
            raise RunError(f"{out} already holds a {'finished ' if (out / 'result.json').exists() else ''}"
                           "jaxnas run; pass --overwrite to replace it")
        remove_run(out)
    print(f"jaxnas demo: two searches on CIFAR-10 ({resolve('cifar10')}), runs in {out}/", flush=True)
    results = []
    for folder, method, what, overrides in DEMO_RUNS:
        print(f"\n== {what}", flush=True)
        ns = argparse.Namespace(command="search", method=method, space=registry.DEFAULT_SPACE, preset="tiny",
                                data="cifar10",
                                out=str(out / folder), seed=0, bench_table=str(table) if table else None,
                                overwrite=overwrite, devices=None, distributed=False, no_progress=False,
                                overrides=overrides, print_config=False)
        results.append((folder, what, _run(ns)))
    print(_demo_summary(results, table))


def _demo_summary(results, table_path) -> str:
    """Each run's architecture, time and, with the NB201 table, its test accuracy and rank."""
    lines = ["", "jaxnas demo: results"]
    truth = None
    if table_path is not None:
        from jaxnas.bench import load_table
        truth = load_table(table_path).values(spaces.get(registry.DEFAULT_SPACE).enumerate(), "cifar10")
    for folder, what, result in results:
        lines.append(f"  {what}")
        lines.append(f"    found {result['arch']}  in {result.get('wall_time_s', 0):.0f} s  "
                     f"({folder}/result.json)")
        acc = result.get("bench", {}).get("CIFAR10TestAccuracy200Epochs")
        if truth is not None and acc is not None:
            top = 100 * float((truth > acc).mean())
            lines.append(f"    NB201 CIFAR-10 test accuracy {acc:.2f} %: top {max(top, 0.01):.1f} % of the "
                         "15,625")
    if truth is not None:
        lines.append(f"  for scale: a random architecture averages {truth.mean():.2f} %, the best is "
                     f"{truth.max():.2f} %")
    lines.append("  (one seed, CPU-sized: what that costs is in README, 'What the demo shows')")
    return "\n".join(lines)


def enable_compilation_cache() -> None:
    """Persist compiled XLA programs (XLA:CPU compiles take tens of seconds), so a resumed or
    repeated run starts at once. JAXNAS_XLA_CACHE picks the folder; an empty value disables it.
    Programs that compile in under JAXNAS_XLA_CACHE_MIN_SECONDS (default 1) are not kept."""
    import jax
    folder = os.environ.get("JAXNAS_XLA_CACHE", str(pathlib.Path.home() / ".cache/jaxnas/xla"))
    if folder:
        jax.config.update("jax_compilation_cache_dir", folder)
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float(os.environ.get("JAXNAS_XLA_CACHE_MIN_SECONDS", "1")))


def _sigterm(signum, frame):
    raise KeyboardInterrupt  # outside the loops' own handlers: stop like Ctrl-C


def main(argv=None) -> int:
    args = parse_args(argv)
    from jaxnas.data import DataError
    from jaxnas.rundir import Interrupted, RunError, threading_main
    old_term = signal.signal(signal.SIGTERM, _sigterm) if threading_main() else None
    try:
        if args.command == "list":
            print(listing(), end="")
            return 0
        if args.command == "plot":
            result = _plot(args)
        else:
            enable_compilation_cache()
            result = _demo(args) if args.command == "demo" else _run(args)
    except Interrupted as err:
        print(f"jaxnas: interrupted: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("jaxnas: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, DataError, RunError, OSError) as err:
        if os.environ.get("JAXNAS_DEBUG"):
            raise
        print(f"jaxnas: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    if result is not None:
        _print_result(result)
    return 0


def _one_line(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        return f"{err.strerror}: {err.filename}" if err.filename else err.strerror
    return " ".join(str(err).split())


if __name__ == "__main__":
    sys.exit(main())
