"""The ``numpy-retinanet`` command: one subcommand per job, each importing its module lazily."""

from __future__ import annotations

import argparse
import sys

from numpy_retinanet.backend import GPUUnavailableError, keep_freed_memory
from numpy_retinanet.engine.config import TrainConfig

TRAIN_DEFAULTS = TrainConfig()
# Two worker processes use both cores of a 2-core laptop for the whole step, not only for
# the matrix products (engine/parallel.py gives the numbers). A fixed number, not the
# machine's core count, so that the same command gives the same numbers everywhere.
CLI_CPU_WORKERS = 2


def _cmd_figures(args) -> int:
    from numpy_retinanet.teaching.figures import make_figures

    for path in make_figures(args.out, only=args.only, checkpoint=args.checkpoint):
        print(f"wrote {path}")
    return 0


def _cmd_bench(args) -> int:
    from numpy_retinanet.tools.bench import run_bench

    return run_bench(args)


def _default_workers(args) -> int:
    if args.workers is not None:
        return args.workers
    return CLI_CPU_WORKERS if args.device in (None, "cpu") else 1


def _cmd_train(args) -> int:
    from numpy_retinanet.engine.trainer import TrainingDiverged, train

    if args.resume:
        try:
            train(TrainConfig(), args.resume, resume=True, device=args.device, workers=args.workers)
        except TrainingDiverged as e:
            print(f"numpy-retinanet train: {e}", file=sys.stderr)
            return 1
        return 0
    config = TrainConfig(preset=args.preset, image_size=args.image_size, num_classes=args.num_classes,
                         iterations=args.iterations, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         warmup_steps=args.warmup_steps, clip_grad_norm=args.clip_grad_norm,
                         eval_images=args.eval_images, device=args.device or "cpu", log_every=args.log_every,
                         workers=_default_workers(args))
    try:
        train(config, args.out)
    except TrainingDiverged as e:
        print(f"numpy-retinanet train: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_evaluate(args) -> int:
    import json

    from numpy_retinanet.backend import get_module
    from numpy_retinanet.data.shapes import ShapesDataset
    from numpy_retinanet.engine.checkpoint import load_checkpoint
    from numpy_retinanet.engine.inference import evaluate_model

    xp = get_module(args.device)
    model, info = load_checkpoint(args.checkpoint)
    model.to(xp)
    tc = info["train_config"]
    size, seed = tc.get("image_size", 128), args.seed if args.seed is not None else tc.get("eval_seed", 1000)
    ds = ShapesDataset(args.num_images, size, model.num_classes, seed=seed)
    result = evaluate_model(model, ds, xp=xp)
    out = {"checkpoint": args.checkpoint, "step": info["step"], "num_images": args.num_images, "seed": seed,
           "AP": result["AP"], "AP50": result["AP50"], "AP75": result["AP75"],
           "per_class_AP": dict(zip(ds.class_names, result["per_class_AP"]))}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"{args.checkpoint} (step {info['step']}) on {args.num_images} shapes images, seed {seed}:")
        print(f"AP {out['AP']:.4f}  AP50 {out['AP50']:.4f}  AP75 {out['AP75']:.4f}")
        for name, ap in out["per_class_AP"].items():
            print(f"  {name:<10} AP {ap:.4f}")
    return 0


def _cmd_detect(args) -> int:
    import os

    from numpy_retinanet.backend import get_module
    from numpy_retinanet.engine.checkpoint import load_checkpoint
    from numpy_retinanet.engine.inference import detect_files

    xp = get_module(args.device)
    model, info = load_checkpoint(args.checkpoint)
    model.to(xp)
    names = info["train_config"].get("class_names")
    if not names:
        from numpy_retinanet.data.shapes import ALL_CLASS_NAMES

        names = list(ALL_CLASS_NAMES[: model.num_classes])
    os.makedirs(args.out, exist_ok=True)
    for path, out_path, dets in detect_files(model, args.images, args.out, names, xp=xp,
                                             score_threshold=args.score_threshold):
        found = ", ".join(f"{names[int(l)]} {s:.2f}" for l, s in zip(dets["labels"], dets["scores"])) or "nothing"
        print(f"{path}: {found} -> {out_path}")
    return 0


def _cmd_ablate(args) -> int:
    from numpy_retinanet.tools.ablate import run_ablation

    result = run_ablation(args.out, iterations=args.iterations, seeds=args.seeds, eval_images=args.eval_images,
                          image_size=args.image_size, settings=args.only)
    for name in ("md", "png", "json"):
        print(f"wrote {args.out}/table1_shapes.{name}")
    print(f"{result['seconds'] / 60:.1f} minutes")
    return 0


def _cmd_check(args) -> int:
    from numpy_retinanet.teaching.exercises import check_file

    return check_file(args.file)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="numpy-retinanet",
        description="RetinaNet and the focal loss in plain NumPy.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    f = sub.add_parser("figures", help="regenerate the PNGs in figures/")
    f.add_argument("--out", default="figures", help="output folder (default: figures)")
    f.add_argument("--only", nargs="*", default=None, help="names of figures to make (default: all)")
    f.add_argument("--checkpoint", default=None,
                   help="use this trained model for the model figures instead of training one")
    f.set_defaults(func=_cmd_figures)

    from numpy_retinanet.tools.ablate import ABLATION_DEFAULTS, SETTINGS

    a = sub.add_parser("ablate", help="Table 1 in miniature: CE vs focal loss at an equal budget, several seeds")
    a.add_argument("--out", default="figures", help="where table1_shapes.md/.png/.json go (default: figures)")
    a.add_argument("--iterations", type=int, default=ABLATION_DEFAULTS["iterations"], help="steps per run")
    a.add_argument("--seeds", type=int, default=ABLATION_DEFAULTS["seeds"], help="runs per loss (seeds 0..N-1)")
    a.add_argument("--eval-images", type=int, default=ABLATION_DEFAULTS["eval_images"],
                   help="held-out images (seed 1000) per evaluation")
    a.add_argument("--image-size", type=int, default=128, help="side of the square images")
    a.add_argument("--only", nargs="*", default=None, metavar="SETTING",
                   help=f"a subset of the settings: {', '.join(repr(s[0]) for s in SETTINGS)}")
    a.set_defaults(func=_cmd_ablate)

    b = sub.add_parser("bench", help="benchmarks (never timed tests)")
    b.add_argument("what", nargs="?", default="all", choices=["all", "conv", "model"],
                   help="all (default): every op and the training step, beside PyTorch when it is "
                        "installed; conv: 3x3 convs vs the matmul rate; model: forward/loss/backward of a preset")
    b.add_argument("--repeats", type=int, default=5, help="timed repeats, median reported")
    b.add_argument("--json", action="store_true", help="print JSON instead of a table")
    b.add_argument("--preset", default="default", help="model: the preset to time (default: default)")
    b.add_argument("--batch-size", type=int, default=8, help="model: images per step (default 8)")
    b.add_argument("--image-size", type=int, default=128, help="model: image side (default 128)")
    b.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="model: where the math runs")
    b.add_argument("--no-torch", action="store_true", help="all: skip the PyTorch comparison")
    b.set_defaults(func=_cmd_bench)
    t = sub.add_parser("train", help="train a detector on the built-in synthetic shapes")
    t.add_argument("--preset", default=TRAIN_DEFAULTS.preset, help="model preset: tiny, default or paper")
    t.add_argument("--image-size", type=int, default=TRAIN_DEFAULTS.image_size,
                   help="side of the square images (>= 64)")
    t.add_argument("--num-classes", type=int, default=TRAIN_DEFAULTS.num_classes, help="kinds of shapes, 1-7")
    t.add_argument("--iterations", type=int, default=TRAIN_DEFAULTS.iterations, help="training steps")
    t.add_argument("--batch-size", type=int, default=TRAIN_DEFAULTS.batch_size, help="images per step")
    t.add_argument("--lr", type=float, default=TRAIN_DEFAULTS.lr, help="base learning rate")
    t.add_argument("--seed", type=int, default=TRAIN_DEFAULTS.seed, help="initialization seed")
    t.add_argument("--warmup-steps", type=int, default=TRAIN_DEFAULTS.warmup_steps,
                   help="linear warm-up steps from lr/3")
    t.add_argument("--clip-grad-norm", type=float, default=TRAIN_DEFAULTS.clip_grad_norm,
                   help="clip the global gradient norm (0: off)")
    t.add_argument("--eval-images", type=int, default=TRAIN_DEFAULTS.eval_images, help="held-out images evaluated at the end")
    t.add_argument("--log-every", type=int, default=TRAIN_DEFAULTS.log_every, help="steps between progress lines")
    t.add_argument("--out", default="runs/shapes", help="run folder (default: runs/shapes)")
    t.add_argument("--resume", metavar="RUN", default=None, help="continue the run in folder RUN")
    # No default here: when resuming, a device not given means the run's own.
    t.add_argument("--device", choices=["cpu", "gpu"], default=None,
                   help="where the math runs (default: cpu; when resuming, the run's device)")
    t.add_argument("--workers", type=int, default=None,
                   help="processes computing each step's gradient, part of the batch each "
                        f"(default: {CLI_CPU_WORKERS} on the cpu, 1 on the gpu; when resuming, the run's)")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser("evaluate", help="COCO-style AP of a checkpoint on held-out shapes")
    e.add_argument("--checkpoint", required=True, help="checkpoint.npz of a run")
    e.add_argument("--num-images", type=int, default=200, help="held-out images (default 200)")
    e.add_argument("--seed", type=int, default=None, help="seed of the held-out images (default: the run's)")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where the math runs")
    e.set_defaults(func=_cmd_evaluate)

    d = sub.add_parser("detect", help="draw detections of a checkpoint on image files")
    d.add_argument("--checkpoint", required=True, help="checkpoint.npz of a run")
    d.add_argument("images", nargs="+", help="PNG or JPEG files")
    d.add_argument("--out", required=True, help="folder for the drawn images")
    d.add_argument("--score-threshold", type=float, default=0.3, help="lowest score drawn and listed")
    d.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="where the math runs")
    d.set_defaults(func=_cmd_detect)

    c = sub.add_parser("check", help="check a gradient-check exercise file (lessons/exercises)")
    c.add_argument("file", help="the exercise file you filled in")
    c.set_defaults(func=_cmd_check)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, GPUUnavailableError) as e:
        print(f"numpy-retinanet {args.command}: error: {e}", file=sys.stderr)
        return 2
