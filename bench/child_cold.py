"""Where a cold start's time goes, phase by phase, in a fresh process.

``phases``: the serving process's steps up to the first answer, timed one
by one (the model comes from the store named by SKINSCAN_MODEL_URI).
``imports``: only the imports, to be run under ``python -X importtime``.
``lambda``: the Lambda entry point instead: import ``functions.lambda_handler``
with SKINSCAN_PRELOAD=1 (the model loads during init), then one invocation
with a function-URL event.
Prints one JSON line.
"""

import json
import sys
import time

STARTED = time.time()


def imports(source: str):
    import functions_framework
    from functions_framework._http.gunicorn import GunicornApplication  # noqa: F401  (the CLI's server)

    app = functions_framework.create_app("classify", source)
    return app


def main() -> None:
    config = json.loads(sys.argv[1])
    marks = {"python_start_epoch": STARTED}
    if config["mode"] == "lambda":
        return lambda_cold(config, marks)
    t = time.time()
    imports(config["source"])
    marks["framework_and_app_s"] = time.time() - t
    t = time.time()
    import boto3  # noqa: F401
    import botocore.config  # noqa: F401
    marks["import_boto3_s"] = time.time() - t
    t = time.time()
    from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    marks["import_litert_s"] = time.time() - t
    if config["mode"] == "imports":
        print(json.dumps(marks))
        return
    from skinscan import store
    from skinscan.classifier import Classifier

    t = time.time()
    resolved = store.resolve()
    marks["s3_pull_s"] = time.time() - t
    t = time.time()
    classifier = Classifier.load(resolved.path, resolved.manifest)
    marks["model_load_s"] = time.time() - t
    with open(config["photo"], "rb") as handle:
        photo = handle.read()
    t = time.time()
    classifier.classify_bytes(photo)
    marks["first_classify_s"] = time.time() - t
    t = time.time()
    classifier.classify_bytes(photo)
    marks["second_classify_s"] = time.time() - t
    marks["backend"] = classifier.backend.name
    marks["end_epoch"] = time.time()
    print(json.dumps(marks))


def lambda_cold(config: dict, marks: dict) -> None:
    import base64
    import os

    os.environ["SKINSCAN_PRELOAD"] = "1"
    t = time.time()
    from functions import lambda_handler

    marks["init_s"] = time.time() - t
    with open(config["photo"], "rb") as handle:
        photo = handle.read()
    event = {"version": "2.0", "rawPath": "/", "requestContext": {"http": {"method": "POST"}},
             "headers": {"content-type": "image/jpeg"}, "isBase64Encoded": True,
             "body": base64.b64encode(photo).decode()}
    t = time.time()
    response = lambda_handler.handler(event)
    marks["first_invoke_s"] = time.time() - t
    marks["end_epoch"] = time.time()
    marks["status"] = response["statusCode"]
    marks["backend"] = json.loads(response["body"]).get("model", {}).get("backend")
    print(json.dumps(marks))


if __name__ == "__main__":
    main()
