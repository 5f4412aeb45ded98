"""Command line: parse arguments, call one function per command. User mistakes → one line, exit 2."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import sys
from pathlib import Path

from ctrldial.errors import UserError


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML config (repeatable; later files win)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one config key, e.g. --set data.max_context_turns=4 (repeatable)")


def _cfg(args, base: dict | None = None):
    from ctrldial.config import build_config

    return build_config(args.config, args.overrides, base=base)


# -- commands ---------------------------------------------------------------------------------------
def cmd_data_stats(args) -> None:
    from ctrldial.data.stats import corpus_stats, format_stats

    overrides = list(args.overrides) + ([f"data.path={args.data}"] if args.data else [])
    from ctrldial.config import build_config

    cfg = build_config(args.config, overrides)
    s = corpus_stats(cfg.data)
    print(json.dumps(s, indent=2) if args.json else format_stats(s))


def cmd_classifier_train(args) -> None:
    from ctrldial.classifier import train_classifier

    train_classifier(_cfg(args), Path(args.out), overwrite=args.overwrite)


def cmd_classifier_eval(args) -> None:
    from ctrldial.classifier import evaluate_classifier

    res = evaluate_classifier(Path(args.dir), _cfg(args), out=Path(args.out) if args.out else None)
    print(json.dumps({k: res[k] for k in ("accuracy", "macro_f1")}, indent=2))


def cmd_classifier_ensemble(args) -> None:
    from ctrldial.classifier import make_ensemble

    make_ensemble([Path(m) for m in args.members], Path(args.out), overwrite=args.overwrite)


def cmd_judge_agreement(args) -> None:
    from ctrldial.agreement import agreement, format_agreement

    print(format_agreement(agreement(Path(args.labels), Path(args.classifier), Path(args.out) if args.out else None,
                                     unsure_below=args.unsure_below)))
    if args.out:
        print(f"written: {Path(args.out) / 'agreement.json'}")


def cmd_judge_draw(args) -> None:
    from ctrldial.handlabels import draw, pool, read_jsonl, write_draw

    exclude = [k["source"] for f in args.exclude for k in read_jsonl(Path(f))]
    rows = pool(Path(args.runs), exclude=exclude)
    labels = _attribute_labels(args.attribute)
    pairs = draw(rows, args.random, args.per_verdict, labels, args.seed, args.prefix, args.heldout_share)
    write_draw(Path(args.out), pairs)
    n_random = sum(k["draw"] == "random" for _, k in pairs)
    print(f"{len(pairs)} responses drawn ({n_random} at random, {len(pairs) - n_random} by verdict) from {len(rows)}: "
          f"label {Path(args.out) / 'blind.jsonl'} into hand-labels.jsonl, then `ctrldial judge join`")


def cmd_judge_join(args) -> None:
    from ctrldial.handlabels import join
    from ctrldial.record import write_jsonl

    lines = join(Path(args.dir), _attribute_labels(args.attribute))
    write_jsonl(Path(args.out), lines)
    print(f"written: {args.out} ({len(lines)} labelled responses)")


def _attribute_labels(attribute: str) -> tuple[str, ...]:
    from ctrldial.data.corpus import ACTS, EMOTIONS

    return {"act": ACTS, "emotion": EMOTIONS}[attribute]


def cmd_run(args) -> None:
    from ctrldial import api

    api.run(_cfg(args), args.out, overwrite=args.overwrite)


def cmd_generate(args) -> None:
    from ctrldial import api

    api.check_label(args.label, api.recorded_labels(args.run_dir), "--label")  # before the model loads (seconds)
    print(api.load(args.run_dir, args.overrides).generate(args.context, args.label))


def cmd_eval(args) -> None:
    from ctrldial import api
    from ctrldial.evaluation import format_eval

    result = api.evaluate(args.run_dir, args.contexts, args.out, labels=args.labels, overrides=args.overrides, record=args.record)
    print(format_eval(result))
    print(f"written: {Path(args.out) / 'generations.jsonl'}, {Path(args.out) / 'metrics.json'}")


def cmd_rescore(args) -> None:
    from ctrldial import api

    for d in args.run_dirs:
        rec = api.rescore(d, args.classifier, name=args.as_name, unsure_below=args.unsure_below)
        m = rec["judges"][args.as_name]["metrics"] if args.as_name else rec["metrics"]
        lo, hi = m["ci"]["control_accuracy"] or (float("nan"), float("nan"))
        corrected = m.get("corrected_control_accuracy")
        gold = m.get("control_accuracy_gold")
        print(f"{d}: control_accuracy={m['control_accuracy']:.3f} [{lo:.3f}, {hi:.3f}]" + (f" gold={gold:.3f}" if gold is not None else "")
              + (f" corrected={corrected:.3f}" if corrected is not None else "")
              + (f" unsure_rate={m['unsure_rate']:.3f} sure={m['control_accuracy_sure']:.3f}" if m.get("unsure_rate") is not None else ""))


def cmd_sweep(args) -> None:
    from ctrldial.backends import make_dispatcher
    from ctrldial.sweep import sweep

    dispatch = make_dispatcher(args.backend, args.ray_address, args.max_retries, args.slurm)
    sweep(Path(args.sweep), Path(args.out), dry_run=args.dry_run, only=args.only, overrides=args.overrides, launcher=args.launcher,
          dispatch=dispatch)


def cmd_tune(args) -> None:
    from ctrldial import api

    api.tune(args.out, args.trials, args.space, objective=args.objective, config=args.config, sweep=args.sweep,
             overrides=args.overrides, seed=args.seed)


def cmd_report(args) -> None:
    from ctrldial import api

    print(f"report: {api.report(args.dir)}")


def cmd_demo(args) -> None:
    from ctrldial.demo import demo

    demo(Path(args.out), config_files=args.config, overrides=args.overrides)


def cmd_chat(args) -> None:
    from ctrldial.chat import chat

    chat(Path(args.run_dir), overrides=args.overrides, act=args.act)


def cmd_bench(args) -> None:
    from ctrldial.bench import bench

    bench(quick=args.quick, out=Path(args.out), overrides=args.overrides)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ctrldial", description="Compare PEFT methods for dialogue-act controlled response generation.")
    ap.add_argument("--debug", action="store_true", help="show full tracebacks and library warnings")
    ap.add_argument("-v", "--verbose", action="store_true", help="show library warnings and notes (quiet by default)")
    sub = ap.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect a corpus").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("stats", help="per-split dialogues, utterances, label distributions, examples, duplicates")
    p.add_argument("--data", help="DailyDialog folder, zip, Parquet, Hub id, or `sample` (default: data.path)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _config_args(p)
    p.set_defaults(func=cmd_data_stats)

    clf = sub.add_parser("classifier", help="the act/emotion classifier that scores generations").add_subparsers(
        dest="classifier_command", required=True
    )
    p = clf.add_parser("train", help="fine-tune an encoder as a single-label classifier")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing classifier in --out")
    _config_args(p)
    p.set_defaults(func=cmd_classifier_train)
    p = clf.add_parser("eval", help="accuracy, macro-F1, per-class scores and confusion matrix on the test split")
    p.add_argument("dir", help="a trained classifier folder")
    p.add_argument("--out", help="where to write eval.json and the heat map (default: the classifier folder)")
    _config_args(p)
    p.set_defaults(func=cmd_classifier_eval)
    p = clf.add_parser("ensemble", help="judge with several trained classifiers at once (mean of their probabilities)")
    p.add_argument("members", nargs="+", help="trained classifier folders (same attribute and labels)")
    p.add_argument("--out", required=True, help="the ensemble folder (the members are copied into it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing classifier in --out")
    p.set_defaults(func=cmd_classifier_ensemble)

    judge = sub.add_parser("judge", help="validate a judge on hand-labelled generated responses").add_subparsers(
        dest="judge_command", required=True
    )
    p = judge.add_parser("agreement", help="a judge's agreement with hand labels: accuracy, per-class precision/recall, confusion")
    p.add_argument("labels", help='JSONL: {"context": [...], "response": "...", "label": "directive"} per line (other keys kept)')
    p.add_argument("--classifier", required=True, help="a trained classifier or ensemble folder")
    p.add_argument("--out", help="folder for agreement.json (with every verdict)")
    p.add_argument("--unsure-below", type=float, default=0.0, metavar="T",
                   help="also report coverage and agreement on the verdicts with confidence >= T (agreement.json always "
                        "lists a range of thresholds)")
    p.set_defaults(func=cmd_judge_agreement)
    p = judge.add_parser("draw", help="draw generated responses to label by hand, blind (blind.jsonl) with their key (key.jsonl)")
    p.add_argument("runs", help="a folder holding generations.jsonl files (runs, evals, a sweep), searched recursively")
    p.add_argument("--out", required=True, help="folder for blind.jsonl and key.jsonl (never overwritten)")
    p.add_argument("--random", type=int, default=100, help="responses drawn uniformly (default 100)")
    p.add_argument("--per-verdict", type=int, default=25, help="then up to this many more per judge verdict (default 25)")
    p.add_argument("--attribute", choices=("act", "emotion"), default="act", help="the labels (default act)")
    p.add_argument("--exclude", action="append", default=[], metavar="KEY.jsonl", help="an earlier draw's key: its responses are not drawn again")
    p.add_argument("--heldout-share", type=float, metavar="P", help="each item goes to the held-out part with chance P (key: part)")
    p.add_argument("--prefix", default="d", help="item ids are PREFIX000, PREFIX001, … (default d)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_judge_draw)
    p = judge.add_parser("join", help="join a draw's hand-labels.jsonl with its key: a labels file for `judge agreement`")
    p.add_argument("dir", help="the draw folder (blind.jsonl, key.jsonl, hand-labels.jsonl)")
    p.add_argument("--out", required=True, help="the labels JSONL to write")
    p.add_argument("--attribute", choices=("act", "emotion"), default="act", help="the labels a hand label may be (default act)")
    p.set_defaults(func=cmd_judge_join)

    p = sub.add_parser("run", help="train one method, generate for every label, score, write record.json")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    _config_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("generate", help="one response from a trained run")
    p.add_argument("run_dir")
    p.add_argument("--label", required=True, help="requested label, e.g. question")
    p.add_argument("--context", action="append", default=[], help="a context turn, oldest first (repeatable)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("eval", help="a trained run on contexts of your own: every context asked for every label, judged")
    p.add_argument("run_dir")
    p.add_argument("--contexts", required=True, help='JSONL: {"context": ["turn", ...]} per line (optional: id, reference, reference_label)')
    p.add_argument("--out", required=True, help="folder for generations.jsonl and metrics.json")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="ask only for these labels (default: every label of the run)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="decoding on top of the run's config, e.g. --set generate.guidance_scale=2")
    p.add_argument("--record", action="store_true",
                   help="also write record.json (the run's record with this decoding and these metrics) for report and rescore")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("rescore", help="judge finished runs' (or `ctrldial eval` folders') generations again with another classifier")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--classifier", required=True, help="a trained classifier folder")
    p.add_argument("--as", dest="as_name", metavar="NAME",
                   help="score as an additional judge NAME (record.judges.NAME); the primary judge's figures stay")
    p.add_argument("--unsure-below", type=float, default=0.0, metavar="T",
                   help="a verdict with confidence below T is unsure: counted apart (unsure_rate), never as a hit (default 0: off)")
    p.set_defaults(func=cmd_rescore)

    p = sub.add_parser("sweep", help="run a grid of configs, skipping finished points")
    p.add_argument("sweep", help="sweep YAML file")
    p.add_argument("--out", required=True)
    p.add_argument("--dry-run", action="store_true", help="list points and what would be skipped")
    p.add_argument("--only", help="run only points whose name matches this glob or substring")
    p.add_argument("--launcher", metavar="CMD", help='run each point as `CMD -m ctrldial run …`, e.g. "accelerate launch --multi_gpu" '
                   "(default: the sweep file's launcher:; \"\" = in this process; local backend only)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.add_argument("--backend", choices=("local", "ray", "slurm"), default="local",
                   help="local: one point after another here (default); ray: one Ray task per point; slurm: a job array (submitit)")
    p.add_argument("--ray-address", metavar="auto|HOST:PORT", help="the Ray cluster to use (default: the file's ray.address, else "
                   "a local cluster started for the sweep)")
    p.add_argument("--max-retries", type=int, metavar="N", help="Ray: retries of a point whose worker died (default 1)")
    p.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                   help="Slurm setting over the file's slurm: (partition, gpus_per_node, cpus_per_task, time, array_parallelism, "
                        "mem_gb, wait, cluster=local), e.g. --slurm partition=gpu --slurm time=4:00:00")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("tune", help="hyper-parameter search (Optuna TPE) scored on validation contexts only; resumable")
    p.add_argument("--sweep", metavar="FILE", help="a sweep file instead of --config: one study per method")
    p.add_argument("--out", required=True, help="study folder: study.db, trials/, trials.md, best.yaml")
    p.add_argument("--trials", type=int, required=True, metavar="N", help="trials in all (a rerun continues the study up to N)")
    p.add_argument("--space", action="append", default=[], metavar="KEY=DIST",
                   help="a searched key: loguniform(a,b), uniform(a,b), int(a,b) or choice(x,y,...), e.g. "
                        "'train.lr=loguniform(1e-5,1e-1)' (repeatable)")
    p.add_argument("--objective", default="valid_control_accuracy", metavar="NAME",
                   help="valid_control_accuracy (maximize; default) or valid_loss (minimize)")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    _config_args(p)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("report", help="tables, plots and report.html from run records")
    p.add_argument("dir", help="a sweep folder (or any folder holding run folders)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("demo", help="the whole comparison offline at a small budget")
    p.add_argument("--out", default="ctrldial-demo")
    _config_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("chat", help="chat with a trained run, choosing the act per turn")
    p.add_argument("run_dir")
    p.add_argument("--act", help="the act of the first replies (default: the run's first label); /act NAME changes it")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("bench", help="speed against plain Hugging Face scripts")
    p.add_argument("--quick", action="store_true", help="small sizes, a few minutes on a CPU")
    p.add_argument("--out", default="bench-out")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_bench)
    return ap


def quiet_libraries() -> None:
    """Library warnings, notes and loading bars off: a run shows ctrldial's progress bars and lines only.

    ``-v`` or ``--debug`` keeps them (e.g. transformers' "newly initialized weights" note when a classifier
    starts from an encoder, or deprecation warnings after an upgrade).
    """
    import logging
    import warnings

    warnings.filterwarnings("ignore")  # FutureWarning/UserWarning from transformers, peft, accelerate, torch
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("transformers", "peft", "accelerate", "datasets", "huggingface_hub", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _terminate(signum, frame):
    raise KeyboardInterrupt  # a scheduler's or `kill`'s SIGTERM ends a run like Ctrl-C: the record says interrupted


def _exit_interrupted() -> None:
    """Exit 130, whatever else arrives. A second SIGTERM during the cleanup is ignored, and SIGINT is blocked:
    after a KeyboardInterrupt that passed through code run from a string, CPython (under ``-m``) ends the
    process by sending itself SIGINT (exit -2, seen once in CI), which a blocked signal cannot do."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("CTRLDIAL_DEBUG") == "1"
    if not (debug or args.verbose):
        quiet_libraries()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        args.func(args)
    except UserError as e:
        if debug:
            raise
        print(f"ctrldial: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("ctrldial: interrupted", file=sys.stderr)
        _exit_interrupted()
    except BrokenPipeError:  # `ctrldial … | head`: the reader left; nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)


if __name__ == "__main__":
    main()
