"""The ``numpy-retinanet`` command: one subcommand per job, each importing its module lazily."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys

from numpy_retinanet import __version__
from numpy_retinanet._checks import check_int, check_probability, check_real
from numpy_retinanet._settings import setting_fields
from numpy_retinanet.backend import GPUUnavailableError, keep_freed_memory
from numpy_retinanet.data.build import MAX_IMAGE_SIZE, DataConfig
from numpy_retinanet.data.images import MAX_SIDE, MIN_SIDE
from numpy_retinanet.data.shapes import MIN_IMAGE_SIZE
from numpy_retinanet.detection.criterion import LossConfig
from numpy_retinanet.engine.checkpoint import SHIPPED_MODEL
from numpy_retinanet.engine.config import CLI_CPU_WORKERS, MAX_BATCH_SIZE, TrainConfig, cli_workers
from numpy_retinanet.evaluation.visualize import DRAW_SCORE_THRESHOLD
from numpy_retinanet.model.presets import MODEL_SETTINGS, PRESETS

DEFAULT_RUN_FOLDER = "runs/shapes"

# Where each group of train's flags comes from, in the order --help lists them.
_GROUPS = (("data settings (data/build.py)", DataConfig), ("loss settings (detection/criterion.py)", LossConfig),
           ("training settings (engine/config.py)", TrainConfig))
_MODEL_PREFIX = "model."  # the dest of a model flag: "model.fpn_channels"
_METAVARS = {int: "N", float: "X", str: "NAME"}
_PATH_METAVARS = {"data": "DIR", "annotations": "FILE", "val_annotations": "FILE"}  # settings that name a path


def _flag(name):
    return "--" + name.replace("_", "-")


def _show(value):
    """A default as it is typed on the command line: 0.666667, 0.5 1 2, true."""
    if isinstance(value, (tuple, list)):
        return " ".join(_show(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value != "" else "none"


def _value_kwargs(example, m):
    """argparse's action, type, nargs, metavar and choices for a setting whose default is ``example``
    and whose metadata is ``m`` (``_settings.setting_metadata``)."""
    if isinstance(example, bool):
        kwargs = {"action": argparse.BooleanOptionalAction}
    elif isinstance(example, tuple):
        kwargs = dict(nargs="+", type=type(example[0]), metavar=_METAVARS[type(example[0])])
    else:
        kwargs = dict(type=type(example), metavar=_METAVARS.get(type(example)))
    if m["choices"] is not None:
        kwargs.update(choices=m["choices"], metavar=None)  # --help lists the choices
    return kwargs


def _add_setting_flags(parser):
    """One flag per setting of TrainConfig, and one per preset setting of the model.

    Generated from the fields (``_settings.setting``): the flag, its type, its choices and the
    default shown in --help come from the one place each setting is written. A flag that is
    not given is absent from the parsed arguments (``argparse.SUPPRESS``), so that the
    config's own default applies and ``--resume`` can tell which settings were given.
    """
    def add(group, name, dest, example, m, shown):
        text = f"{m['help']} (default: {shown})".replace("%", "%%")  # argparse formats help with %
        kwargs = _value_kwargs(example, m)
        if name in _PATH_METAVARS:
            kwargs["metavar"] = _PATH_METAVARS[name]
        group.add_argument(_flag(name), dest=dest, default=argparse.SUPPRESS, help=text, **kwargs)

    placed = set()
    for title, config_class in _GROUPS:
        group = parser.add_argument_group(title)
        for f in setting_fields(config_class):
            if f.name in placed:  # TrainConfig lists the inherited fields again
                continue
            placed.add(f.name)
            shown = (f"{CLI_CPU_WORKERS} on the cpu (fewer for a smaller batch), 1 on the gpu; when resuming, "
                     "the run's" if f.name == "workers" else _show(f.default))
            add(group, f.name, f.name, f.default, f.metadata, shown)
    group = parser.add_argument_group("model settings (model/presets.py): change one setting of the --preset")
    for name, m in MODEL_SETTINGS.items():
        values = {preset: settings[name] for preset, settings in PRESETS.items()}
        shown = "the preset's: " + "; ".join(f"{p} {_show(v)}" for p, v in values.items())
        add(group, name, _MODEL_PREFIX + name, values["default"], m, shown)


def _checked(check, *limits):
    """An argparse ``type`` that reads the flag's text and checks it with ``check(name, value, *limits)``
    (``_checks``): argparse then names the flag in its error and exits 2, before any work is done."""
    number, kind = (int, "an int") if check is check_int else (float, "a real number")

    def read(text):
        try:
            value = number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"the value must be {kind}, got {text!r}") from None
        try:
            return check("the value", value, *limits)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return read


def _check_positive(name, value):
    return check_real(name, value, 0, low_open=True)


def _given_settings(args):
    """(TrainConfig settings, model overrides) that were given on the command line."""
    given = vars(args)
    fields = {f.name for f in setting_fields(TrainConfig)}
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if k in fields}
    overrides = {k[len(_MODEL_PREFIX):]: tuple(v) if isinstance(v, list) else v
                 for k, v in given.items() if k.startswith(_MODEL_PREFIX)}
    return settings, overrides


def _cmd_figures(args) -> int:
    from numpy_retinanet.engine.run_folder import make_output_folder
    from numpy_retinanet.teaching.figures import make_figures

    make_output_folder(args.out)  # named by its flag here; make_figures names its argument
    for path in make_figures(args.out, only=args.only, checkpoint=args.checkpoint):
        print(f"wrote {path}")
    return 0


def _cmd_bench(args) -> int:
    from numpy_retinanet.tools.bench import run_bench

    return run_bench(args)


def _coco_defaults(settings):
    """``--data`` or ``--annotations`` alone select the coco dataset, and its number of classes is
    that of the annotations file's categories, unless given. Their paths are made absolute, so that
    ``evaluate`` and ``--resume`` find the run's files from any folder."""
    import os

    for name in ("data", "annotations", "val_annotations"):
        if settings.get(name):
            settings[name] = os.path.abspath(settings[name])
    if ("data" in settings or "annotations" in settings) and "dataset" not in settings:
        settings["dataset"] = "coco"
    if settings.get("dataset") == "coco" and settings.get("annotations") and "num_classes" not in settings:
        from numpy_retinanet.data.coco_format import read_annotations

        settings["num_classes"] = len(read_annotations(settings["annotations"])[1])


def _cmd_train(args) -> int:
    import os

    from numpy_retinanet.engine.trainer import TrainingStopped, train

    settings, model_overrides = _given_settings(args)
    device, workers = settings.pop("device", None), settings.pop("workers", None)
    try:
        _coco_defaults(settings)
        if args.resume:
            if args.out is not None and os.path.realpath(args.out) != os.path.realpath(args.resume):
                raise ValueError(f"--out {args.out} is not the run being resumed ({args.resume}): a resumed run "
                                 "stays in its folder")
            if args.force:
                raise ValueError("--force replaces a run and --resume continues it: give one of them")
            metrics = train(TrainConfig(), args.resume, resume=True, device=device, workers=workers,
                            changes=dict(settings, model_overrides=model_overrides))
        else:
            if workers is None:
                workers = cli_workers(device or "cpu", settings.get("batch_size", TrainConfig.batch_size))
            config = TrainConfig(**settings, **({"device": device} if device else {}), workers=workers,
                                 model_overrides=model_overrides)
            metrics = train(config, args.out or DEFAULT_RUN_FOLDER, force=args.force, init=args.init)
    except TrainingStopped as e:
        print(f"numpy-retinanet train: {e}", file=sys.stderr)
        return 1
    # Stopped by a signal, after saving: the shell's convention, 128 + the signal's number.
    return 128 + signal.Signals[metrics["signal"]] if metrics["signal"] else 0


def _write_json(path, value):
    """``value`` as JSON in ``path`` (its folder made)."""
    import json
    import os

    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(value, f)
    except OSError as e:  # a folder that cannot be made, a path that is a folder, a full disk
        raise ValueError(f"cannot write {os.fspath(path)!r}: {e.strerror or e}") from e


def _cmd_evaluate(args) -> int:
    import math

    from numpy_retinanet.backend import get_module
    from numpy_retinanet.data.build import build_dataset
    from numpy_retinanet.engine.checkpoint import load_checkpoint
    from numpy_retinanet.engine.inference import evaluate_with_detections
    from numpy_retinanet.engine.run_folder import json_text
    from numpy_retinanet.evaluation.coco import SUMMARY, coco_results, summary_lines

    xp = get_module(args.device)
    model, info = load_checkpoint(args.checkpoint)
    model.to(xp)
    # The run's own held-out images: its data settings, seed and count, unless told otherwise.
    run = TrainConfig.from_dict(info["train_config"], num_classes=model.num_classes)
    if args.seed is not None:
        run = dataclasses.replace(run, eval_seed=args.seed)
    if args.num_images is not None:
        num_images = args.num_images
    else:  # a run that scored nothing (eval_images 0) is scored on the default count
        num_images = run.eval_images or TrainConfig.eval_images
    if (args.data is None) != (args.annotations is None):
        raise ValueError("--data and --annotations must be given together (a folder of images and its JSON)")
    if args.annotations is not None:  # every image of that file, scored in its categories
        run = dataclasses.replace(run, dataset="coco", data=args.data, annotations=args.annotations,
                                  val_annotations=args.annotations)
        num_images = args.num_images
    ds = build_dataset(run, "eval", num_images=num_images)
    if hasattr(ds, "category_ids") and ds.category_ids != info["category_ids"]:
        raise ValueError(f"the dataset's category ids must be the checkpoint's {info['category_ids']} (the classes "
                         f"it was trained on), got {ds.category_ids}")
    result, detections = evaluate_with_detections(model, ds, xp=xp, area_scale=args.area_scale)
    image_ids = getattr(ds, "image_ids", range(len(ds)))  # the shapes' ids: their index in the held-out set
    if args.results:
        _write_json(args.results, coco_results(detections, image_ids, info["category_ids"]))
    out = {"checkpoint": args.checkpoint, "step": info["step"], "dataset": run.dataset, "num_images": len(ds),
           "seed": run.eval_seed, **{key: result[key] for key, *_ in SUMMARY}, "area_scale": args.area_scale,
           "per_class_AP": dict(zip(info["class_names"], result["per_class_AP"]))}
    if args.json:
        print(json_text(out))  # strict JSON: null where the text below prints -1
    else:
        if run.dataset == "coco":
            held_out = (f"{run.val_annotations}" if run.val_annotations else
                        f"the held-out {run.val_fraction:g} of {run.annotations} (data seed {run.data_seed})")
            print(f"{args.checkpoint} (step {info['step']}) on {len(ds)} images of {held_out}:")
        else:
            print(f"{args.checkpoint} (step {info['step']}) on {len(ds)} held-out {run.dataset} images, "
                  f"seed {run.eval_seed}:")
        print("\n".join(summary_lines(result)))
        print("per-class AP (IoU=0.50:0.95, area=all):")
        for name, ap in out["per_class_AP"].items():
            print(f"  {name:<10} AP -1 (no {name} in these images)" if math.isnan(ap) else f"  {name:<10} AP {ap:.4f}")
    if args.results:
        print(f"wrote {args.results}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _cmd_detect(args) -> int:
    from numpy_retinanet.backend import get_module
    from numpy_retinanet.engine.checkpoint import load_checkpoint
    from numpy_retinanet.engine.inference import detect_files, image_id_of
    from numpy_retinanet.engine.run_folder import make_output_folder
    from numpy_retinanet.evaluation.coco import coco_results

    xp = get_module(args.device)
    model, info = load_checkpoint(args.checkpoint)
    model.to(xp)
    names = info["class_names"]
    make_output_folder(args.out)
    found_in = []
    for path, out_path, dets in detect_files(model, args.images, args.out, names, xp=xp,
                                             score_threshold=args.score_threshold, max_side=args.max_side):
        found = ", ".join(f"{names[int(l)]} {s:.2f}" for l, s in zip(dets["labels"], dets["scores"])) or "nothing"
        print(f"{path}: {found} -> {out_path}")
        found_in.append(dets)
    if args.json:
        _write_json(args.json, coco_results(found_in, [image_id_of(p) for p in args.images], info["category_ids"]))
        print(f"wrote {args.json}")
    return 0


def _cmd_export(args) -> int:
    from numpy_retinanet.engine.checkpoint import export_weights

    print(f"wrote {export_weights(args.checkpoint, args.out)}")
    return 0


def _cmd_convert(args) -> int:
    from numpy_retinanet.tools.torchvision_weights import checkpoint_to_torchvision, torchvision_to_checkpoint

    try:
        import torch  # noqa: F401  (only to say what is missing before anything is read)
    except ImportError:
        raise ValueError("convert needs PyTorch: pip install 'numpy-retinanet[torch]'") from None
    if args.to == "torch":
        print(f"wrote {checkpoint_to_torchvision(args.source, args.out)}")
    else:
        out, num_classes = torchvision_to_checkpoint(args.source, args.out, bn_eps=args.bn_eps)
        print(f"wrote {out} ({num_classes} classes)")
    return 0


def _cmd_ablate(args) -> int:
    from numpy_retinanet.engine.trainer import TrainingStopped
    from numpy_retinanet.tools.ablate import run_ablation

    try:
        result = run_ablation(args.out, iterations=args.iterations, seeds=args.seeds, eval_images=args.eval_images,
                              dataset=args.dataset, image_size=args.image_size, settings=args.only, lrs=args.lr,
                              jobs=args.jobs, work=args.work, plan_only=args.plan)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (tools.ablate: signum 2 or 15)
        print(f"interrupted: the finished cells are kept in {args.work}, and the cells in training saved their step; "
              "the same command continues from them", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    except TrainingStopped as e:  # a cell of the table diverged, one could not save (a full disk), one was killed
        print(f"numpy-retinanet ablate: {e}", file=sys.stderr)
        return 1
    if result is not None:  # None: --plan, which trains nothing
        # run_ablation printed the files it wrote; the time is this command's, cells reused included
        print(f"ablate done in {result['seconds'] / 60:.1f} minutes of wall clock")
    return 0


def _cmd_check(args) -> int:
    from numpy_retinanet.teaching.exercises.runner import check_file, show_hint

    return check_file(args.file) if args.hint is None else show_hint(args.file, args.hint)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="numpy-retinanet",
        description="RetinaNet and the focal loss in plain NumPy.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    # For main: a word the command does not know is reported by the command's own parser, with its usage.
    p.command_parsers = sub.choices

    f = sub.add_parser("figures", help="regenerate the PNGs in figures/")
    f.add_argument("--out", default="figures", help="output folder (default: figures)")
    f.add_argument("--only", nargs="*", default=None, help="names of figures to make (default: all)")
    f.add_argument("--checkpoint", default=None,
                   help="the trained model of the model figures (default: the shipped model)")
    f.set_defaults(func=_cmd_figures)

    from numpy_retinanet.tools.table1 import ABLATION_DEFAULTS, ABLATION_IMAGE_SIZE, ABLATION_ITERATIONS, SETTINGS

    a = sub.add_parser("ablate", help="Table 1 in miniature: CE vs focal loss at an equal budget, several seeds")
    a.add_argument("--dataset", default="shapes", choices=tuple(ABLATION_IMAGE_SIZE),
                   help="the regime: shapes on noise, or shapes-clutter with distractors (default: shapes)")
    a.add_argument("--out", default="figures",
                   help="where the table's .md/.png/.json go (table1_shapes.*, table1_shapes_clutter.*; "
                        "default: figures)")
    a.add_argument("--iterations", type=int, default=None,
                   help="steps per run (default: the regime's, " + ", ".join(
                       f"{k} {v}" for k, v in ABLATION_ITERATIONS.items()) + ")")
    a.add_argument("--seeds", type=int, default=ABLATION_DEFAULTS["seeds"], help="runs per loss (seeds 0..N-1)")
    a.add_argument("--eval-images", type=int, default=ABLATION_DEFAULTS["eval_images"],
                   help="held-out images (seed 1000) per evaluation")
    a.add_argument("--image-size", type=int, default=None,
                   help="side of the square images (default: the regime's, " + ", ".join(
                       f"{k} {v}" for k, v in ABLATION_IMAGE_SIZE.items()) + ")")
    a.add_argument("--lr", type=float, nargs="+", default=None,
                   help="the sweep: train every cell at each of these rates and write table1_lr_sweep.md/.json "
                        "(table1_lr_sweep_clutter.* for shapes-clutter) instead of the table; a rate that diverges "
                        "is shown as such and not chosen (default: no sweep, each loss at its chosen rate, "
                        "ABLATION_LRS)")
    a.add_argument("--jobs", type=int, default=1, help="cells trained at once, one core each (default: 1)")
    a.add_argument("--work", default="runs/ablate",
                   help="where the cells' runs are kept, by one ablate at a time; a finished cell is reused, a "
                        "stopped one (Ctrl-C or SIGTERM stop every cell at its step) continues from its last "
                        "checkpoint (default: runs/ablate)")
    a.add_argument("--only", nargs="*", default=None, metavar="SETTING",
                   help=f"a subset of the settings: {', '.join(repr(s[0]) for s in SETTINGS)}")
    a.add_argument("--plan", action="store_true",
                   help="say how many cells are finished, continue from a checkpoint or start from step 0, and "
                        "about how long the rest takes, then exit: trains and writes nothing (also while the "
                        "command runs on the same --work)")
    a.set_defaults(func=_cmd_ablate)

    b = sub.add_parser("bench", help="benchmarks (never timed tests)")
    b.add_argument("what", nargs="?", default="all", choices=["all", "conv", "model"],
                   help="all (default): every op and the training step, beside PyTorch when it is "
                        "installed; conv: 3x3 convs vs the matmul rate; model: forward/loss/backward of a preset")
    b.add_argument("--repeats", type=int, default=5, help="timed repeats, median reported")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.add_argument("--preset", default="default", choices=tuple(PRESETS),
                   help="model: the preset to time (default: default)")
    b.add_argument("--batch-size", type=_checked(check_int, 1, MAX_BATCH_SIZE), default=TrainConfig.batch_size,
                   help=f"model: images per step (default: {TrainConfig.batch_size})")
    b.add_argument("--image-size", type=_checked(check_int, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
                   default=TrainConfig.image_size,
                   help=f"model: image side (default: {TrainConfig.image_size})")
    b.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="model: where the math runs")
    b.add_argument("--no-torch", action="store_true", help="all: skip the PyTorch comparison")
    b.set_defaults(func=_cmd_bench)
    t = sub.add_parser("train", help="train a detector (default: on the built-in synthetic shapes)",
                       description="Train a RetinaNet and write a run folder. Every setting has a flag; "
                                   "a flag not given keeps the default shown.")
    t.add_argument("--out", default=None,
                   help=f"run folder (default: {DEFAULT_RUN_FOLDER}); one that holds a run is refused unless "
                        "--resume or --force")
    t.add_argument("--resume", metavar="RUN", default=None,
                   help="continue the run in folder RUN with its own settings; --iterations extends it (the lr "
                        "drops stay at their steps), --device, --workers, --log-every and --checkpoint-every "
                        "may change, other flags must match the run")
    t.add_argument("--force", action="store_true", help="replace the run that --out holds")
    t.add_argument("--init", metavar="CHECKPOINT", default=None,
                   help="start from a checkpoint's parameters (fine-tuning; e.g. the shipped model): each whose "
                        "name and shape match is loaded, the others (the classification layer, for another "
                        "number of classes) keep their initialization; what was loaded is printed")
    _add_setting_flags(t)
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="COCO's AP and AR of a checkpoint on its run's held-out images, or "
                                        "on a COCO-format folder")
    e.add_argument("--checkpoint", default=SHIPPED_MODEL,
                   help="checkpoint.npz of a run (default: the shipped model, trained by the default recipe)")
    e.add_argument("--num-images", type=int, default=None,
                   help="held-out images (default: as many as the run was scored on)")
    e.add_argument("--seed", type=int, default=None, help="seed of the held-out images (default: the run's)")
    e.add_argument("--data", metavar="DIR", default=None,
                   help="score on a COCO-format folder instead: its images (with --annotations)")
    e.add_argument("--annotations", metavar="FILE", default=None,
                   help="the COCO instances JSON of the images to score (all of them, unless --num-images)")
    e.add_argument("--json", action="store_true",
                   help="print JSON (null where the text prints -1: no object of that area or class to score)")
    e.add_argument("--results", metavar="FILE", default=None,
                   help="also write the detections in COCO's results format (image_id, category_id, bbox as "
                        "[x, y, w, h] in the image file's pixels, score), as pycocotools' loadRes reads it; the "
                        "ids are the annotations file's (shapes: the image's index among the held-out images, "
                        "category ids 1..K)")
    e.add_argument("--area-scale", type=_checked(_check_positive), default=1.0, metavar="X",
                   help="multiply COCO's small/medium/large area bounds (32^2, 96^2) by X, for images much "
                        "smaller than COCO's, e.g. (128/640)^2 = 0.04 (default: 1, COCO's)")
    e.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where the math runs")
    e.set_defaults(func=_cmd_evaluate)

    d = sub.add_parser("detect", help="draw detections of a checkpoint on image files")
    d.add_argument("--checkpoint", default=SHIPPED_MODEL,
                   help="checkpoint.npz of a run (default: the shipped model, trained by the default recipe)")
    d.add_argument("images", nargs="+", help="PNG or JPEG files")
    d.add_argument("--out", required=True, help="folder for the drawn images")
    d.add_argument("--score-threshold", type=_checked(check_probability), default=DRAW_SCORE_THRESHOLD,
                   help=f"lowest score drawn and listed (default: {DRAW_SCORE_THRESHOLD})")
    d.add_argument("--max-side", type=_checked(check_int, MIN_SIDE, MAX_SIDE), default=MAX_SIDE,
                   help=f"a longer image side is shrunk to this before detection, boxes mapped back "
                        f"({MIN_SIDE} to {MAX_SIDE}; default: {MAX_SIDE}, which bounds memory near 1 GB)")
    d.add_argument("--json", metavar="FILE", default=None,
                   help="also write the detections listed in COCO's results format (bbox [x, y, w, h] in the "
                        "file's pixels); image_id: the file name's number for a name of digits only "
                        "(000000397133.jpg -> 397133, as COCO names its images), else the name without extension")
    d.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where the math runs")
    d.set_defaults(func=_cmd_detect)

    x = sub.add_parser("export", help="write a run's parameters without the optimizer state (to share a model)")
    x.add_argument("checkpoint", help="checkpoint.npz of a run")
    x.add_argument("out", help="the .npz file to write")
    x.set_defaults(func=_cmd_export)

    v = sub.add_parser("convert", help="torchvision's retinanet_resnet50_fpn weights (.pth) to a checkpoint "
                                       "(.npz), or back with --to torch (needs PyTorch)")
    v.add_argument("source", help="a torchvision state dict (.pth), or with --to torch a converted checkpoint")
    v.add_argument("out", help="the checkpoint (.npz) to write, or with --to torch the state dict (.pth)")
    v.add_argument("--to", choices=["numpy", "torch"], default="numpy",
                   help="numpy: .pth -> .npz (default); torch: .npz -> .pth that "
                        "retinanet_resnet50_fpn(weights=None, weights_backbone=None) loads with strict=True")
    v.add_argument("--bn-eps", type=_checked(check_real, 0, 1), default=0.0, metavar="X",
                   help="the frozen batch norms' eps (default: 0, as torchvision runs its COCO weights; 1e-5 "
                        "for a state dict of a model built with weights=None)")
    v.set_defaults(func=_cmd_convert)

    c = sub.add_parser("check", help="check an exercise file (lessons/exercises), or show one of its hints")
    c.add_argument("file", help="the exercise file you filled in")
    c.add_argument("--hint", type=int, default=None, metavar="N",
                   help="print hint N of the file's exercise (gentlest first) instead of checking it")
    c.set_defaults(func=_cmd_check)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse's own message would name the top-level command and show its usage
        parser.command_parsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    keep_freed_memory()
    # Progress lines reach a file or a pipe as they are printed (`train > log`, `ablate | tee`), not in
    # blocks of 8 KiB: Python buffers stdout by blocks when it is not a terminal, and an ablation's first
    # block would come after hours.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as e:  # a second Ctrl-C or SIGTERM during training (engine.trainer.Aborted)
        print("interrupted", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    except (ValueError, OSError, GPUUnavailableError) as e:  # OSError: a file that cannot be read or written
        print(f"numpy-retinanet {args.command}: error: {e}", file=sys.stderr)
        return 2
