"""The ``kanalysis`` command line.

Each subcommand has a ``_add_<name>_parser(subparsers)`` function that declares its arguments and
a ``_cmd_<name>(args) -> int`` handler that returns the exit code. Handlers import what they need
lazily so that ``kanalysis --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from kanalysis import __version__
from kanalysis.errors import KanalysisError


def _whole_number(text: str) -> int:
    """argparse type: a whole number, also written as 1e6 or 1000.0 (refused if fractional)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


def _add_synth_parser(sub) -> None:
    p = sub.add_parser("synth", help="generate a synthetic ketamine cohort folder")
    p.add_argument("--design", required=True, choices=["single", "serial", "maintenance", "clinic"])
    p.add_argument("--n-subjects", type=_whole_number, default=None, help="number of subjects")
    p.add_argument("--seed", type=_whole_number, default=None,
                   help="random seed, a whole number >= 0 (same seed, same bytes)")
    p.add_argument("--mnar", action="store_true", help="missing-not-at-random dropout")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--out", required=True, help="output folder (replaced atomically)")


def _cmd_synth(args) -> int:
    from kanalysis import synthetic
    from kanalysis._paths import COHORT_MARKER, check_output_dir

    seed = synthetic.DEFAULT_SEED if args.seed is None else args.seed
    synthetic.check_arguments(args.design, n_subjects=args.n_subjects, seed=seed)
    check_output_dir(args.out, marker=COHORT_MARKER, what="--out")
    cohort = synthetic.generate(args.design, n_subjects=args.n_subjects, seed=seed,
                                mnar=args.mnar)
    report = cohort.validate()
    if not report.ok:  # a generator bug, never the user's input
        print(report, file=sys.stderr)
        return 3
    path = synthetic.write(cohort, args.out, format=args.format)
    info = synthetic.summary(cohort)
    print(f"wrote {path}: {info['subjects']} subjects, {info['assessments']} assessments, "
          f"{info['infusions']} infusions ({args.design}, seed {seed})")
    return 0


def _add_validate_parser(sub) -> None:
    p = sub.add_parser("validate", help="check a cohort folder and list every problem")
    p.add_argument("cohort", help="cohort folder")
    p.add_argument("--format", choices=["text", "markdown", "html", "csv"], default="text",
                   help="how to print the problems")
    p.add_argument("--report", default=None,
                   help="also write the problems to this file (.md, .html, .csv or .txt)")


_VALIDATION_SIGNATURES = (b"No problems found", b"<p>No problems found", b"| severity |",
                          b"<table", b"table,column,rows,rule,values,severity",
                          b"kanalysis validation report")


def _cmd_validate(args) -> int:
    from pathlib import Path

    from kanalysis._io import atomic_write_text
    from kanalysis._paths import check_output_file
    from kanalysis.cohort import load_cohort
    from kanalysis.errors import DataValidationError
    from kanalysis.validation import ValidationReport

    if args.report:
        check_output_file(args.report, inputs=[args.cohort], signature=_VALIDATION_SIGNATURES,
                          what="--report")
    try:
        cohort = load_cohort(args.cohort, validate=False)
        report = cohort.validate()
    except DataValidationError as err:
        report = ValidationReport()
        if err.problems is not None:
            report.problems = err.problems
        else:
            report.add("cohort", None, None, str(err))
    render = {"text": str, "markdown": ValidationReport.to_markdown,
              "html": ValidationReport.to_html,
              "csv": lambda r: r.problems.to_csv(index=False)}
    out = render[args.format](report)
    if args.report:
        suffix = Path(args.report).suffix.lower()
        kind = {".md": "markdown", ".html": "html", ".htm": "html", ".csv": "csv"}.get(suffix, "text")
        text = render[kind](report)
        if kind == "text":
            text = "kanalysis validation report\n" + text
        atomic_write_text(args.report, text if text.endswith("\n") else text + "\n")
    if report.ok:
        print(f"{args.cohort}: valid." + ("" if report.problems.empty else "\n" + out))
        return 0
    print(f"{args.cohort}: invalid.\n{out}", file=sys.stderr)
    return 1


def _add_summary_parser(sub) -> None:
    p = sub.add_parser("summary", help="print a short summary of a cohort folder")
    p.add_argument("cohort", nargs="+", help="cohort folder(s)")


def _cmd_summary(args) -> int:
    from kanalysis.cohort import load_cohort
    from kanalysis.synthetic import summary

    for path in args.cohort:
        cohort = load_cohort(path)
        print(json.dumps({"path": path, **summary(cohort)}, indent=2))
    return 0


def _add_run_parser(sub) -> None:
    p = sub.add_parser("run", help="execute the notebooks with papermill into OUT/<run-id>/")
    p.add_argument("--cohort", default=None, help="cohort folder (default: the notebooks' default)")
    p.add_argument("--notebooks", default=None,
                   help="comma-separated names, numbers or topics (default: all), e.g. 01,04")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="notebook parameter (repeatable)")
    p.add_argument("--privacy", default=None, metavar="{none,strict}",
                   help="strict: no row-level records, small counts suppressed (the cohort's "
                        "metadata can make a run stricter, never laxer)")
    p.add_argument("--out", default="reports", help="parent folder of the run folder")
    p.add_argument("--run-id", default=None, help="run folder name (default: UTC timestamp)")
    p.add_argument("--with-code", action="store_true",
                   help="keep the code cells in the HTML reports (default: results only)")
    p.add_argument("--no-html", action="store_true", help="skip the HTML export and index.html")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _cmd_run(args) -> int:
    from kanalysis.runner import NotebookExecutionError, parse_cli_value, run_notebooks

    names = args.notebooks.split(",") if args.notebooks is not None else None
    params = {name: parse_cli_value(value) for name, value in args.parameter}
    try:
        result = run_notebooks(names, cohort=args.cohort, parameters=params,
                               privacy=args.privacy, out=args.out, run_id=args.run_id,
                               html=not args.no_html, with_code=args.with_code,
                               progress=not args.no_progress)
    except NotebookExecutionError as err:
        print(f"kanalysis run: {err}", file=sys.stderr)
        return 1
    where = result.run_dir
    try:
        where = where.relative_to(Path.cwd())
    except ValueError:
        pass
    print(f"run {result.run_id}: {len(result.notebooks)} notebook(s) executed into {where}"
          + ("" if args.no_html else f"; open {where / 'index.html'}"))
    return 0


def _add_figures_parser(sub) -> None:
    p = sub.add_parser("figures", help="regenerate the paper figures (byte-reproducible)")
    p.add_argument("--cohort", default=None, help="cohort folder (default: bundled synthetic)")
    p.add_argument("--out", default="figures", help="output folder")
    p.add_argument("--formats", default="pdf,svg,png", help="comma-separated formats")
    p.add_argument("--relapse-rule", default="loss_of_response",
                   help="relapse rule of the durability figure (a, b, c or b+c; as notebook 03)")
    p.add_argument("--relapse-threshold", type=float, default=None,
                   help="cut-off of the threshold relapse rule (default 22)")
    p.add_argument("--response-reduction", type=float, default=None,
                   help="response: this fraction of baseline lost (default the scale's, 0.5)")
    p.add_argument("--conf-level", type=float, default=0.95, help="confidence level")


def _cmd_figures(args) -> int:
    from kanalysis.figures import build_paper_figures

    paths = build_paper_figures(cohort_path=args.cohort, out=args.out,
                                formats=tuple(args.formats.split(",")),
                                relapse_rule=args.relapse_rule,
                                relapse_threshold=args.relapse_threshold,
                                response_reduction=args.response_reduction,
                                conf_level=args.conf_level)
    print(f"wrote {len(paths)} files into {args.out}")
    return 0


def _add_import_parser(sub) -> None:
    p = sub.add_parser(
        "import", help="import real data (clinic export + mapping, or CDISC ADaM) as a cohort folder"
    )
    p.add_argument("--mapping", help="mapping file (.toml/.yaml) describing a clinic export, or "
                   "the REDCap instruments with --redcap")
    p.add_argument("--adam", help="folder with ADSL, ADQS, ADEX (+ ADAE, ADVS, ADTTE) as .xpt or .sas7bdat")
    p.add_argument("--redcap", help="REDCap records export (CSV, raw values or labels)")
    p.add_argument("--dictionary", help="REDCap data dictionary (CSV) of the project")
    p.add_argument("--out", required=True, help="cohort folder to write (replaced atomically)")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--report", default=None,
                   help="also write the import report here (.md or .html)")
    p.add_argument("--report-format", choices=["markdown", "html"], default="markdown",
                   help="format of the report printed when the import fails")
    p.add_argument("--id-key", default=None,
                   help="write the original-id -> pseudonym key here (keep it out of the project)")
    p.add_argument("--encoding", default=None, help="text encoding of the ADaM files")
    p.add_argument("--scale", action="append", default=[], metavar="PARAMCD=SCALE",
                   help="ADaM: map a PARAMCD to a registered scale (repeatable)")
    p.add_argument("--subject-variable", action="append", default=[], metavar="COLUMN=VAR",
                   help="ADaM: ADSL variable for a subject covariate, e.g. n_failed_trials=NPRTRT")
    p.add_argument("--population", default=None, help="ADaM: ADSL flag to select, e.g. FASFL")
    p.add_argument("--default-duration-min", type=float, default=None,
                   help="ADaM: infusion duration when ADEX has no end time")
    p.add_argument("--pseudonymise", action="store_true",
                   help="ADaM: replace USUBJID by P0001 ... (clinic imports always do, unless the "
                        "mapping sets pseudonymise_ids = false)")


_REPORT_SIGNATURES = (b"# Import report", b"<!DOCTYPE html>")
_ID_KEY_SIGNATURE = (b"original_id,subject_id",)


def _cmd_import(args) -> int:
    from kanalysis._io import atomic_write_text
    from kanalysis._paths import COHORT_MARKER, check_output_dir, check_output_file
    from kanalysis.importers import import_adam, import_clinic

    def pairs(items, what):
        out = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise KanalysisError(f"--{what} expects NAME=VALUE, got {item!r}")
            out[key.strip()] = value.strip()
        return out

    if args.redcap and not (args.dictionary and args.mapping):
        raise KanalysisError("--redcap needs --dictionary DICTIONARY.csv and --mapping MAP.toml")
    if args.dictionary and not args.redcap:
        raise KanalysisError("--dictionary is for a REDCap import (--redcap RECORDS.csv)")
    if args.adam and args.mapping:
        raise KanalysisError("give either --adam DIR or --mapping FILE, not both")
    if not (args.adam or args.mapping or args.redcap):
        raise KanalysisError("give --adam DIR, --mapping FILE or --redcap RECORDS.csv")
    if args.default_duration_min is not None and not (
            0 <= args.default_duration_min <= 24 * 60):
        raise KanalysisError("--default-duration-min must be a number of minutes between 0 and "
                             f"1440, got {args.default_duration_min!r}")
    inputs = [p for p in (args.mapping, args.adam, args.redcap, args.dictionary) if p]
    if args.mapping:
        inputs += _mapping_inputs(args.mapping)
    out = check_output_dir(args.out, inputs=inputs, marker=COHORT_MARKER, what="--out")
    if args.report:
        check_output_file(args.report, inputs=[*inputs, args.out], signature=_REPORT_SIGNATURES,
                          what="--report")
    if args.id_key:
        check_output_file(args.id_key, inputs=[*inputs, args.out], signature=_ID_KEY_SIGNATURE,
                          what="--id-key")

    if args.redcap:
        from kanalysis.importers.redcap import import_redcap

        result = import_redcap(args.redcap, dictionary=args.dictionary, mapping=args.mapping)
    elif args.mapping:
        result = import_clinic(args.mapping)
    else:
        result = import_adam(args.adam, scale_map=pairs(args.scale, "scale"),
                             subject_variables=pairs(args.subject_variable, "subject-variable"),
                             encoding=args.encoding, population=args.population,
                             default_duration_min=args.default_duration_min,
                             pseudonymise=args.pseudonymise)
    if args.report:
        from pathlib import Path

        path = Path(args.report)
        text = result.to_html() if path.suffix.lower() in (".html", ".htm") else result.to_markdown()
        atomic_write_text(path, text)
    if args.id_key and result.id_key is not None:
        # Written even when the import fails: the report names subjects by pseudonym only.
        atomic_write_text(args.id_key, result.id_key.to_csv(index=False, lineterminator="\n"))
    if not result.ok:
        text = result.to_html() if args.report_format == "html" else result.to_markdown()
        print(text, file=sys.stderr)
        print(f"kanalysis import: {len(result.report.errors)} error(s); no cohort written.",
              file=sys.stderr)
        return 1
    folder = result.save(out, format=args.format, inputs=inputs)
    n_warn = len(result.report.warnings)
    print(f"wrote {folder}: {result.cohort.n_subjects} subjects "
          f"({', '.join(f'{n} {len(t)}' for n, t in result.cohort.tables.items())}); "
          f"{n_warn} warning(s); report in {folder / 'import_report.md'}")
    return 0


def _add_design_parser(sub) -> None:
    p = sub.add_parser("design", help="simulated power and sample size from a scenario file")
    p.add_argument("--scenario", required=True, help="scenario file (.toml), see examples/")
    p.add_argument("--n", default=None, help="n per arm: start:stop:step (e.g. 40:200:20) or a list")
    p.add_argument("--n-sim", dest="n_sim", type=int, default=None, help="replicates (default 1000)")
    p.add_argument("--seed", type=int, default=None, help="root seed (default: new, recorded)")
    p.add_argument("--analysis", default=None,
                   help="mmrm (default), lmm_slope, responder, cox or logrank")
    p.add_argument("--covariance", default=None, help="MMRM covariance structure (default us)")
    p.add_argument("--df-method", dest="df_method", default=None,
                   help="satterthwaite (default) or kenward-roger")
    p.add_argument("--alpha", type=float, default=None, help="two-sided alpha (default 0.05)")
    p.add_argument("--threshold", type=float, default=None, help="responder threshold")
    p.add_argument("--target", type=float, default=None, help="target power (default 0.8)")
    p.add_argument("--null", action="store_true", help="also simulate the null scenario")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, help="Dask scheduler address tcp://host:port")
    where.add_argument("--workers", type=int, default=None, help="start a local Dask cluster")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None,
                   help="replicates per task")
    p.add_argument("--out", default="design", help="output folder (default design/)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _cmd_design(args) -> int:
    from kanalysis.design.cli import run

    return run(args)


def _mapping_inputs(mapping: str) -> list[str]:
    """The export files a mapping names (so that --out cannot replace them); best effort."""
    from kanalysis.importers.clinic import mapping_files

    try:
        return [str(p) for p in mapping_files(mapping)]
    except KanalysisError:
        return []


_COMMANDS = ["synth", "validate", "summary", "run", "figures", "import", "design"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kanalysis",
        description="Statistics for ketamine and esketamine treatment studies.",
    )
    parser.add_argument("--version", action="version", version=f"kanalysis {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMANDS:
        globals()[f"_add_{name}_parser"](sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kanalysis`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = globals()[f"_cmd_{args.command.replace('-', '_')}"]
    try:
        return int(handler(args) or 0)
    except KanalysisError as err:
        print(f"kanalysis {args.command}: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file system refusal the checks could not foresee (disk full, ...)
        where = f" ({err.filename})" if getattr(err, "filename", None) else ""
        print(f"kanalysis {args.command}: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"kanalysis {args.command}: out of memory; use a smaller input or a larger machine.",
              file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
