"""The ``skinscan`` command: classify photos, serve the stack, train and ship models.

The top layer: it may import any adapter (functions, web, bot) and the training
code, always lazily inside the command that needs it, so ``skinscan classify``
never loads Flask, Telegram or TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DEFAULT_DATA = Path("../shared/data/skin9")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skinscan", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    classify = commands.add_parser("classify", help="classify image files and print JSON results")
    classify.add_argument("images", nargs="+", type=Path)
    classify.add_argument("--model", help="model path or s3:// URI (default: SKINSCAN_MODEL_URI or the shipped model)")
    classify.set_defaults(run=run_classify)

    serve = commands.add_parser("serve", help="start the function, the upload page and (with a token) the bot")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--function-port", type=int, default=8080)
    serve.add_argument("--web-port", type=int, default=8000)
    serve.set_defaults(run=run_serve)

    train = commands.add_parser("train", help="train the DenseNet121 (or its ImageNet teacher) in PyTorch",
                                description="One PyTorch trainer for CPU (bf16 where supported) and GPU. "
                                            "The student is the served DenseNet121; `skinscan export` writes it "
                                            "as the seed's Keras .h5.")
    train.add_argument("--data", type=Path, default=DEFAULT_DATA)
    train.add_argument("--out", type=Path, required=True, help="the run's folder (checkpoints, state.json)")
    train.add_argument("--role", choices=["student", "teacher"], default="student",
                       help="student: the served DenseNet121; teacher: an ImageNet EfficientNet-Lite")
    train.add_argument("--teacher-name", choices=["lite0", "lite1", "lite2"], default="lite0")
    train.add_argument("--teacher", type=Path, metavar="BEST.pt", help="distil from this teacher run's checkpoint")
    train.add_argument("--distill-weight", type=float, default=0.7, help="a in (1-a)*CE + a*T^2*KL")
    train.add_argument("--temperature", type=float, default=2.0)
    train.add_argument("--batchnorm-momentum", type=float, default=0.01,
                       help="the student's BatchNorm update rate (0.01: Keras' 0.99, as v1-v2.2 trained)")
    train.add_argument("--image-size", type=int, default=128)
    train.add_argument("--epochs", type=int,
                       help="length of the cosine schedule (default 30; with --resume: the run's own)")
    train.add_argument("--steps-per-epoch", type=int, default=100)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--learning-rate", type=float, default=4e-4)
    train.add_argument("--time-budget", type=float, metavar="MINUTES",
                       help="fit the cosine schedule into this many minutes (a resumed run stops there)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    train.add_argument("--init-model", type=Path, metavar="MODEL.h5",
                       help="warm start from a trained skinscan .h5 or a run's .pt of the same role")
    train.add_argument("--split", type=Path, help="the lesion-grouped split file (default: the shipped model's)")
    train.add_argument("--cache", type=Path, help="keep the decoded photos here between runs")
    train.add_argument("--pairs", type=int, default=4, help="two-view lesions per batch (0: off)")
    train.add_argument("--consistency", type=float, default=0.3, help="weight of the two-view agreement loss")
    train.add_argument("--class-power", type=float, default=0.35,
                       help="sampling: 0 draws every class equally often, 1 as often as in the data")
    train.add_argument("--clinical-share", type=float, default=0.35,
                       help="least share of camera photos drawn inside a class that has both types")
    train.add_argument("--no-style-augmentation", action="store_true",
                       help="only crops, flips and mild colour (for the ablation)")
    train.add_argument("--val-limit", type=int, default=900, help="validation photos scored every epoch")
    train.add_argument("--device", default="auto", help="auto, cpu or cuda")
    train.add_argument("--batch-workers", type=int, default=1,
                       help="threads augmenting batches ahead (more where cores are spare: a GPU machine)")
    train.add_argument("--seed", type=int, default=42)
    train.set_defaults(run=run_train)

    export = commands.add_parser("export", help="write a trained student checkpoint as the seed's Keras .h5 "
                                                "(or a teacher's as its Keras twin), checked against the PyTorch "
                                                "network on real photos")
    export.add_argument("checkpoint", type=Path,
                        help="a student or teacher run's best.pt (or last.pt); with --to-torch, a skinscan .h5")
    export.add_argument("--out", type=Path, required=True,
                        help="the .h5 to write (its manifest, or a teacher's entry for calibrate --companion, "
                             "goes beside it)")
    export.add_argument("--to-torch", action="store_true",
                        help="the other way: write a trained skinscan .h5 as a student .pt for --init-model "
                             "where there is no TensorFlow (the lent GPU machine)")
    export.add_argument("--data", type=Path, default=DEFAULT_DATA)
    export.add_argument("--split", type=Path, help="the run's split file (default: the shipped model's)")
    export.set_defaults(run=run_export)

    evaluate = commands.add_parser("evaluate", help="measure a model on held-out photos and non-skin negatives")
    evaluate.add_argument("--model", type=Path, default=None,
                          help="the .h5 (default: the shipped model), or a trainer checkpoint .pt (the network alone)")
    evaluate.add_argument("--data", type=Path, default=DEFAULT_DATA)
    evaluate.add_argument("--split", type=Path, help="split file (default: the one beside the model)")
    evaluate.add_argument("--part", default="test", choices=["train", "val", "test"])
    evaluate.add_argument("--out", type=Path, help="write evaluation.json/.txt and confusion_matrix.png here")
    evaluate.set_defaults(run=run_evaluate)

    calibrate = commands.add_parser("calibrate",
                                    help="fit temperature, triage, quality and novelty rules on validation data")
    calibrate.add_argument("--model", type=Path, required=True)
    calibrate.add_argument("--data", type=Path, default=DEFAULT_DATA)
    calibrate.add_argument("--split", type=Path, help="split file (default: the one beside the model)")
    calibrate.add_argument("--referral-target", type=float, default=0.95,
                           help="malignant referral to reach on validation, for every photo type")
    calibrate.add_argument("--skin-rejection", type=float, default=0.025,
                           help="most validation skin photos of a type that 'not recognised' may reject")
    calibrate.add_argument("--train-limit", type=int,
                           help="fit the novelty centroids on at most this many training photos (every camera "
                                "photo kept), to save time on a CPU")
    calibrate.add_argument("--companion", type=Path,
                           help="a teacher's Keras twin (skinscan export of a teacher checkpoint) to serve with "
                                "the model, probabilities averaged; copied beside the model")
    calibrate.add_argument("--companion-weight", type=float, default=0.5,
                           help="the companion's share of the averaged probabilities")
    calibrate.set_defaults(run=run_calibrate)

    compare = commands.add_parser("compare", help="the seed's table: CNN, MobileNet and DenseNet121 trained here")
    compare.add_argument("--data", type=Path, default=DEFAULT_DATA)
    compare.add_argument("--out", type=Path, default=Path("runs/compare"))
    compare.add_argument("--split", type=Path, help="split file (default: the shipped model's)")
    compare.add_argument("--epochs", type=int, default=10)
    compare.add_argument("--image-size", type=int, default=96)
    compare.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default: one pass's worth)")
    compare.add_argument("--reuse-densenet", type=Path, metavar="MODEL.h5",
                         help="take the DenseNet121 row from this trained model instead of training one")
    compare.set_defaults(run=run_compare)

    sizes = commands.add_parser("input-size", help="measure a trained model at several input sizes on validation "
                                "photos (per photo type) and save it at the best one")
    sizes.add_argument("--model", type=Path, required=True)
    sizes.add_argument("--data", type=Path, default=DEFAULT_DATA)
    sizes.add_argument("--split", type=Path, help="split file (default: the one beside the model)")
    sizes.add_argument("--sizes", type=int, nargs="+", default=[128, 144, 160])
    sizes.add_argument("--limit", type=int, help="at most this many validation photos (every camera photo kept)")
    sizes.add_argument("--out", type=Path, help="save the model at the best size here (then calibrate it)")
    sizes.set_defaults(run=run_input_size)

    optimize = commands.add_parser("optimize",
                                   help="derive the fast LiteRT form of a model and verify it against the .h5")
    optimize.add_argument("--model", type=Path, required=True)
    optimize.add_argument("--kind", default="litert-float32", choices=["litert-float32", "litert-int8"])
    optimize.add_argument("--data", type=Path, default=DEFAULT_DATA, help="real photos to verify on (held-out split)")
    optimize.add_argument("--split", type=Path, help="split file (default: the one beside the model)")
    optimize.set_defaults(run=run_optimize)

    publish = commands.add_parser("publish-model", help="upload a model and its manifest to S3, verified")
    publish.add_argument("model", type=Path)
    publish.add_argument("destination", help="s3://bucket/prefix/ (or a full key ending in .h5)")
    publish.set_defaults(run=run_publish)

    bot = commands.add_parser("bot", help="run the Telegram bot by polling (needs TELEGRAM_BOT_TOKEN)")
    bot.add_argument("--function-url", default=os.environ.get("SKINSCAN_FUNCTION_URL", "http://127.0.0.1:8080/"),
                     help="the classify function (default: SKINSCAN_FUNCTION_URL or the local one)")
    bot.set_defaults(run=run_bot)
    bot_commands = bot.add_subparsers(dest="bot_command", metavar="BOT_COMMAND")
    set_webhook = bot_commands.add_parser("set-webhook", help="register the webhook URL with Telegram, "
                                          "with the secret from TELEGRAM_WEBHOOK_SECRET")
    set_webhook.add_argument("url")
    set_webhook.add_argument("--max-connections", type=int, default=None,
                             help="deliveries Telegram makes at once: the webhook function's concurrency "
                                  "(serverless.yml botConcurrency; default bot.app.DEFAULT_MAX_CONNECTIONS, 2)")
    set_webhook.set_defaults(run=run_set_webhook)

    args = parser.parse_args(argv)
    from ..imaging import configure_process

    configure_process()
    return int(args.run(args) or 0)


def run_classify(args: argparse.Namespace) -> int:
    from ..contract import ErrorBody, ErrorCode
    from ..imaging import ImageError
    from ..service import load_classifier
    from ..store import ModelUnavailable

    try:
        classifier = load_classifier(args.model)  # None: SKINSCAN_MODEL_URI or the shipped model
    except ModelUnavailable as error:
        print(json.dumps(ErrorBody(ErrorCode.MODEL_UNAVAILABLE, str(error)).to_wire()), file=sys.stderr)
        return 3
    failures = 0
    for path in args.images:
        answer: dict[str, object]
        try:
            answer = classifier.classify_bytes(path.read_bytes()).to_wire()
        except ImageError as error:
            failures += 1
            answer = ErrorBody(error.code, error.message).to_wire()
        except OSError as error:
            failures += 1
            answer = {"error": {"code": "unreadable", "message": str(error)}}
        print(json.dumps({"file": str(path), **answer}, indent=2))
    return 1 if failures else 0


def run_serve(args: argparse.Namespace) -> int:
    from .local_stack import serve

    return serve(args.host, args.function_port, args.web_port)


def run_train(args: argparse.Namespace) -> int:
    from ..training.torch_train import TorchTrainConfig, train  # PyTorch before any TensorFlow import
    from ..training.augment import AugmentConfig
    from ..store import SHIPPED_MODEL

    config = TorchTrainConfig(
        data=args.data, out=args.out, split_file=_split_for(SHIPPED_MODEL, args.split), role=args.role,
        teacher_name=args.teacher_name, image_size=args.image_size, teacher_checkpoint=args.teacher,
        distill_weight=args.distill_weight, temperature=args.temperature,
        batchnorm_momentum=args.batchnorm_momentum, init_model=args.init_model,
        epochs=args.epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
        learning_rate=args.learning_rate, time_budget_minutes=args.time_budget, cache_dir=args.cache,
        pairs_per_batch=args.pairs, consistency=args.consistency, class_power=args.class_power,
        clinical_share=args.clinical_share, val_limit=args.val_limit, device=args.device, seed=args.seed,
        batch_workers=args.batch_workers,
        augmentation=AugmentConfig(style=not args.no_style_augmentation))
    train(config, resume=args.resume)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..training.torch_train import export_run, import_h5  # PyTorch before any TensorFlow import
    from ..store import SHIPPED_MODEL

    if args.to_torch:
        imported = import_h5(args.checkpoint, args.out)
        print(f"wrote {args.out}: {args.checkpoint} as a student checkpoint (max |dp| "
              f"{imported.max_abs_difference:.1e}); use it with skinscan train --init-model")
        return 0
    record = export_run(args.checkpoint, args.out, args.data, _split_for(SHIPPED_MODEL, args.split))
    check = record["export_check"]
    print(f"wrote {args.out}: the Keras model matches the PyTorch network on {check['photos']} validation photos "
          f"(max |dp| {check['max_abs_difference']:.1e}); "
          + (f"serve it beside a DenseNet121 with skinscan calibrate --model MODEL.h5 --companion {args.out}"
             if record.get("role") == "teacher" else "calibrate it next"))
    return 0


def _split_for(model: Path, split: Path | None) -> Path:
    return split or model.with_name(model.stem + ".split.json")


def run_evaluate(args: argparse.Namespace) -> int:
    if args.model and args.model.suffix == ".pt":
        return _evaluate_checkpoint(args)
    from ..training.evaluate import evaluate, text_report
    from ..store import SHIPPED_MODEL

    model = args.model or SHIPPED_MODEL
    report = evaluate(model, args.data, _split_for(model, args.split), args.part, args.out)
    print(text_report(report), end="")
    return 0


def _evaluate_checkpoint(args: argparse.Namespace) -> int:
    """A trainer checkpoint (teacher or student): the network's own figures, no serving rules."""
    from ..training.torch_train import evaluate_checkpoint  # PyTorch before any TensorFlow import
    from ..store import SHIPPED_MODEL

    report = evaluate_checkpoint(args.model, args.data, _split_for(SHIPPED_MODEL, args.split), args.part)
    print(f"{report['role']} {args.model} (epoch {report['epoch']}, {report['image_size']} px) on {args.part}")
    print(f"{'photos':22s} {'n':>5s} {'top-1':>6s} {'bal.':>6s} {'top-4':>6s} {'AUC':>6s}")
    for name, row in {"all": report, **report["by_group"]}.items():
        auc = "     -" if row["malignant_auc"] is None else f"{row['malignant_auc']:6.3f}"
        print(f"{name:22s} {row['count']:5d} {row['top1_accuracy']:6.3f} {row['balanced_accuracy']:6.3f} "
              f"{row['top4_accuracy']:6.3f} {auc}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "evaluation.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from ..training.calibrate import calibrate

    calibrate(args.model, args.data, _split_for(args.model, args.split),
              referral_target=args.referral_target, skin_rejection=args.skin_rejection,
              train_limit=args.train_limit, companion=args.companion, companion_weight=args.companion_weight)
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from ..training.compare import compare, table
    from ..store import SHIPPED_MODEL

    rows = compare(args.data, args.out, _split_for(SHIPPED_MODEL, args.split), args.epochs, args.image_size,
                   reuse={"densenet121": args.reuse_densenet} if args.reuse_densenet else None,
                   steps_per_epoch=args.steps_per_epoch)
    print(table(rows), end="")
    print(f"curves: {args.out / 'training_curves.png'}")
    return 0


def run_input_size(args: argparse.Namespace) -> int:
    from ..training.sizes import compare_sizes, save_at_size

    rows = compare_sizes(args.model, args.data, _split_for(args.model, args.split), args.sizes, args.limit)
    best = max(rows, key=lambda row: (row["score"], -row["size"]))
    print(f"best on validation: {best['size']} px (score {best['score']:.4f})")
    if args.out:
        save_at_size(args.model, best["size"], args.out)
        print(f"saved {args.out}; calibrate it next")
    return 0


def run_optimize(args: argparse.Namespace) -> int:
    from ..imaging import Preprocessing
    from ..manifest import manifest_path_for, read_manifest
    from ..training.fastpath import derive, sample_batches

    split = _split_for(args.model, args.split)
    data = args.data if args.data.is_dir() else None
    manifest = read_manifest(manifest_path_for(args.model))
    records = [("model", derive(args.model, sample_batches(Preprocessing.from_dict(manifest["preprocessing"]), data,
                                                           split), args.kind))]
    if "companion" in manifest:  # the pair's second network gets its own verified fast form
        companion = Preprocessing.from_dict(manifest["companion"]["preprocessing"])
        records.append(("companion", derive(args.model, sample_batches(companion, data, split), args.kind,
                                            companion=True)))
    for which, record in records:
        verified = record["verified"]
        print(f"{which} {record['kind']}: {verified['images']} {'real' if data else 'generated'} photos, top-1 "
              f"agreement {verified['top1_agreement']:.4f}, max |Δp| {verified['max_abs_difference']:.2e} "
              f"(tolerance {verified['tolerance']:g}) -> {'accepted' if verified['accepted'] else 'REJECTED'}")
    return 0 if all(record["verified"]["accepted"] for _, record in records) else 1


def run_publish(args: argparse.Namespace) -> int:
    from ..training.publish import PublishError, publish_model

    try:
        uri = publish_model(args.model, args.destination)
    except PublishError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"published and verified. Configure the function with:\nSKINSCAN_MODEL_URI={uri}")
    return 0

def run_bot(args: argparse.Namespace) -> int:
    token = os.environ.get("TELEGRAM_BOT_TOKEN")
    if not token:
        print("error: set TELEGRAM_BOT_TOKEN (from @BotFather)", file=sys.stderr)
        return 2
    from bot.app import run_polling

    print(f"telegram bot: polling; classify function at {args.function_url}   (Ctrl+C to stop)")
    run_polling(token, args.function_url)
    return 0


def run_set_webhook(args: argparse.Namespace) -> int:
    token, secret = os.environ.get("TELEGRAM_BOT_TOKEN"), os.environ.get("TELEGRAM_WEBHOOK_SECRET")
    if not token or not secret:
        print("error: set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET", file=sys.stderr)
        return 2
    from bot.app import DEFAULT_MAX_CONNECTIONS, set_webhook

    try:
        set_webhook(token, args.url, secret, max_connections=args.max_connections or DEFAULT_MAX_CONNECTIONS)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"webhook set: {args.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
