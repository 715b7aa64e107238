"""`python -m avs_jax.predict`: metric depth of your own images and echoes with a stage-1 run.

    python -m avs_jax.predict --run=runs/avsnet --images=DIR_OR_FILE --echoes=DIR_OR_FILE \\
        [--relative=DIR --kind=disparity|depth] [--method=median|mean_std] --out=DIR \\
        [--skip_bad] [--batch_size=N] [--intrinsics=camera.json [--train_focal=F]]

Images (.jpg/.jpeg/.png) and echoes (.wav/.npy) are paired by file stem (one file each: paired
whatever their names). Writes per sample `<stem>.npy` (float32 metric depth `[H0, W0]`, the
input image's size: M_p, or with --relative the relative prediction `<stem>.npy` scaled by M_p),
`<stem>.png` (the map in the evaluation figures' colours, with a colour bar in metres), and
`scales.csv` for all. Built on `avs_jax.MetricScaler` (avs_jax/metric_scaler.py): the same
numbers as the API with the same batch size. A bad input is one line naming the file, exit
status 1; `--skip_bad` skips its sample and lists it at the end. docs/predict.md.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
from typing import Sequence

import numpy as np
import tqdm

from avs_jax.errors import BadInputError, InputError, MissingInputError
from avs_jax.evaluation.figures import depth_map_png
from avs_jax.metric_scaler import KINDS, METHODS, MetricScaler
from avs_jax.user_inputs import ECHO_SUFFIXES, IMAGE_SUFFIXES, BadSampleError

PROG = "python -m avs_jax.predict"
DEFAULT_BATCH_SIZE = 1  # MetricScaler.load's: the command and the API run the same program
CSV_COLUMNS = ("sample", "scale_factor", "shift", "median_mp")


@dataclasses.dataclass(frozen=True)
class Pair:
    """The files of one sample: image, echo (None for an Only-RGB run), relative map or None."""

    stem: str
    image: str
    echo: str | None = None
    relative: str | None = None


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _files(
    path: str, suffixes: Sequence[str], flag: str
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """({stem: file} of `path` (one file, or a folder's files with `suffixes`), [(file, problem)]).

    Two files of one stem (`a.jpg`, `a.png`) are a problem: which one is meant is not guessed.
    """
    if os.path.isfile(path):
        return {_stem(path): path}, []
    if not os.path.isdir(path):
        raise MissingInputError(f"--{flag}={path}: no such file or folder")
    found: dict[str, str] = {}
    problems, ambiguous = [], set()
    for name in sorted(os.listdir(path)):
        stem, suffix = os.path.splitext(name)
        full = os.path.join(path, name)
        if name.startswith(".") or suffix.lower() not in suffixes or not os.path.isfile(full):
            continue
        if stem in found:
            problems.append((full, f"same stem as {found[stem]}; keep one of them"))
            ambiguous.add(stem)
        else:
            found[stem] = full
    if not found:
        raise BadInputError(f"--{flag}={path}: no {'/'.join(suffixes)} file in this folder")
    return {k: v for k, v in found.items() if k not in ambiguous}, problems


def find_pairs(
    images: str, echoes: str | None, relative: str | None, needs_echo: bool
) -> tuple[list[Pair], list[tuple[str, str]]]:
    """The samples of the command's folders by stem, and (file, problem) of each file left out."""
    imgs, problems = _files(images, IMAGE_SUFFIXES, "images")
    single = os.path.isfile(images)
    if relative and os.path.isfile(relative) and not single:
        raise BadInputError(
            f"--relative={relative} is a file: with a folder of --images, give the folder of "
            "their <stem>.npy"
        )
    echos: dict[str, str] = {}
    if needs_echo:
        echos, more = _files(echoes, ECHO_SUFFIXES, "echoes")
        problems += more
        if single and os.path.isfile(echoes):  # one image, one recording: whatever their names
            echos = {_stem(images): echoes}
    pairs = []
    for stem, image in imgs.items():
        echo = echos.get(stem)
        if needs_echo and echo is None:
            problems.append((image, f"no echo {stem}.wav or {stem}.npy in {echoes}"))
            continue
        rel = None
        if relative:
            rel = (
                relative
                if single and os.path.isfile(relative)
                else os.path.join(relative, stem + ".npy")
            )
            if not os.path.isfile(rel):
                problems.append((image, f"no relative prediction {rel}"))
                continue
        pairs.append(Pair(stem, image, echo, rel))
    problems += [
        (echo, f"no image {stem}{'/'.join(IMAGE_SUFFIXES)} in {images}")
        for stem, echo in echos.items()
        if stem not in imgs and not single
    ]
    return pairs, problems


def _check_out(out: str, pairs: Sequence[Pair]) -> None:
    """BadInputError if an output (`<stem>.npy`, `<stem>.png`, scales.csv) would overwrite an
    input, e.g. --out is the folder of .npy echoes or of the relative maps."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise BadInputError(f"--out={out} is a file, not a folder")
    inputs = {os.path.realpath(x) for p in pairs for x in (p.image, p.echo, p.relative) if x}
    outputs = [os.path.join(out, "scales.csv")]
    outputs += [os.path.join(out, p.stem + suffix) for p in pairs for suffix in (".npy", ".png")]
    for path in outputs:
        if os.path.realpath(path) in inputs:
            raise BadInputError(
                f"--out={out}: the output {path} would overwrite that input; write the outputs "
                "to another folder"
            )


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.9g}"  # 9 digits: float32 round-trips


def predict_files(
    run: str,
    images: str,
    echoes: str | None,
    out: str,
    relative: str | None = None,
    kind: str = "disparity",
    method: str = "median",
    skip_bad: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    intrinsics: str | None = None,
    train_focal: float | None = None,
) -> dict:
    """The command without its argument parsing: writes the outputs into `out`.

    Returns {"written": [stem, ...], "skipped": ["<file>: <problem>", ...]}. Raises an
    InputError for the first bad input (without `skip_bad`), a run that is not stage 1, or when
    no sample is left.
    """
    scaler = MetricScaler.load(
        run, batch_size=batch_size, intrinsics=intrinsics, train_focal=train_focal
    )
    if scaler.uses_echo and not echoes:
        raise BadInputError(
            f"--echoes is required: the {scaler.variant!r} model of {run} reads each image's echo"
        )
    if not scaler.uses_echo and echoes:
        print(f"{PROG}: {run} is an Only-RGB run: --echoes not read", file=sys.stderr)
    pairs, unpaired = find_pairs(images, echoes, relative, scaler.uses_echo)
    if unpaired and not skip_bad:
        n = len(unpaired) - 1
        more = f" (and {n} more; --skip_bad skips them)" if n else ""
        raise BadSampleError(unpaired[0][0], unpaired[0][1] + more)
    skipped = [f"{path}: {problem}" for path, problem in unpaired]
    _check_out(out, pairs)
    os.makedirs(out, exist_ok=True)
    written: list[str] = []
    with (
        open(os.path.join(out, "scales.csv"), "w", newline="") as f,
        tqdm.tqdm(total=len(pairs), desc="predict", unit="img", file=sys.stderr) as bar,
    ):
        rows = csv.writer(f)
        rows.writerow(CSV_COLUMNS)
        for i in range(0, len(pairs), batch_size):
            samples = []
            for p in pairs[i : i + batch_size]:
                try:
                    samples.append(scaler.prepare(p.image, p.echo, p.relative, name=p.stem))
                except InputError as e:
                    if not skip_bad:
                        raise
                    skipped.append(str(e))
            for s, pred in zip(samples, scaler.run(samples, kind, method)):
                np.save(os.path.join(out, s.name + ".npy"), pred.depth)
                depth_map_png(
                    os.path.join(out, s.name + ".png"), pred.depth, s.name, scaler.max_depth
                )
                rows.writerow(
                    [s.name, _fmt(pred.scale_factor), _fmt(pred.shift), _fmt(pred.median_mp)]
                )
                written.append(s.name)
            f.flush()  # the rows of the maps written so far, should a later sample stop the run
            bar.update(len(pairs[i : i + batch_size]))
    if not written:
        raise BadInputError(
            f"no sample left to predict; skipped {len(skipped)}: " + "; ".join(skipped[:5])
        )
    return {"written": written, "skipped": skipped}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Metric depth of images and their binaural echoes (AVS-Net)."
    )
    parser.add_argument("--run", required=True, help="a stage-1 training workdir")
    parser.add_argument("--images", required=True, help=".jpg/.jpeg/.png file or folder")
    parser.add_argument("--echoes", help=".wav/.npy file or folder, paired by stem")
    parser.add_argument("--relative", help="folder of <stem>.npy relative predictions to scale")
    parser.add_argument("--kind", choices=KINDS, help="what --relative holds (disparity)")
    parser.add_argument("--method", choices=METHODS, help="scaling with --relative (median)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--skip_bad", action="store_true", help="skip and list bad samples")
    parser.add_argument(
        "--batch_size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="samples per model call (1); MetricScaler.load(run, batch_size=N) matches it",
    )
    parser.add_argument(
        "--intrinsics",
        help="the camera's intrinsics.json: M_p × its focal length / training's",
    )
    parser.add_argument(
        "--train_focal",
        type=float,
        help="training's focal length, sqrt(fx/W * fy/H) (default: the run's camera.json)",
    )
    args = parser.parse_args(argv)
    if args.train_focal is not None and not args.intrinsics:
        parser.error("--train_focal goes with --intrinsics, which is not given")
    if args.train_focal is not None and not args.train_focal > 0:
        parser.error(f"--train_focal must be > 0, got {args.train_focal}")
    if not args.relative and (args.kind or args.method):
        parser.error("--kind and --method describe --relative, which is not given")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """The command; an InputError exits with one line naming the bad input, status 1."""
    # Here, not at the top: avs_jax.main defines absl flags (--config, --workdir) on import,
    # which a program importing this module as a library may define itself.
    from avs_jax.main import exit_on_error  # noqa: PLC0415

    args = parse_args(argv)
    result = exit_on_error(
        predict_files,
        args.run,
        args.images,
        args.echoes,
        args.out,
        args.relative,
        args.kind or "disparity",
        args.method or "median",
        args.skip_bad,
        args.batch_size,
        args.intrinsics,
        args.train_focal,
    )
    print(f"wrote {len(result['written'])} metric depth map(s) and scales.csv to {args.out}")
    if result["skipped"]:
        print(f"skipped {len(result['skipped'])} bad sample(s) (--skip_bad):")
        for line in result["skipped"]:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
