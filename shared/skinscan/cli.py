"""The ``skinscan`` command: classify photos, serve the stack, train and ship models."""

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

    train = commands.add_parser("train", help="train the DenseNet121 from scratch on a photo folder")
    train.add_argument("--data", type=Path, default=DEFAULT_DATA)
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--image-size", type=int, default=128)
    train.add_argument("--epochs", type=int, default=60)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--learning-rate", type=float, default=2e-3)
    train.add_argument("--time-budget", type=float, metavar="MINUTES",
                       help="stop (and finish the cosine schedule) within this many minutes")
    train.add_argument("--weights", type=Path, help="start the DenseNet121 backbone from a local weights file")
    train.add_argument("--split", type=Path, help="reuse (or write) this split file")
    train.add_argument("--seed", type=int, default=42)
    train.set_defaults(run=run_train)

    publish = commands.add_parser("publish-model", help="upload a model and its manifest to S3, verified")
    publish.add_argument("model", type=Path)
    publish.add_argument("destination", help="s3://bucket/prefix/ (or a full key ending in .h5)")
    publish.set_defaults(run=run_publish)

    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


def run_classify(args: argparse.Namespace) -> int:
    from .imaging import ImageError
    from .service import get_classifier
    from .store import ModelUnavailable

    if args.model:
        os.environ["SKINSCAN_MODEL_URI"] = args.model
    try:
        classifier = get_classifier()
    except ModelUnavailable as error:
        print(json.dumps({"error": {"code": "model_unavailable", "message": str(error)}}), file=sys.stderr)
        return 3
    failures = 0
    for path in args.images:
        try:
            result = classifier.classify_bytes(path.read_bytes())
        except (OSError, ImageError) as error:
            failures += 1
            result = {"error": {"code": getattr(error, "code", "unreadable"),
                                "message": getattr(error, "message", None) or str(error)}}
        print(json.dumps({"file": str(path), **result}, indent=2))
    return 1 if failures else 0


def run_serve(args: argparse.Namespace) -> int:
    from .local_stack import serve

    return serve(args.host, args.function_port, args.web_port)


def run_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    train(TrainConfig(data=args.data, out=args.out, image_size=args.image_size, epochs=args.epochs,
                      batch_size=args.batch_size, learning_rate=args.learning_rate,
                      time_budget_minutes=args.time_budget, weights=args.weights,
                      split_file=args.split, seed=args.seed))
    return 0


def run_publish(args: argparse.Namespace) -> int:
    from .publish import PublishError, publish_model

    try:
        uri = publish_model(args.model, args.destination)
    except PublishError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"published and verified. Configure the function with:\nSKINSCAN_MODEL_URI={uri}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
