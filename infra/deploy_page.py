"""Upload the upload page to the stack's page bucket, pointed at the deployed function.

    python infra/deploy_page.py --stage dev [--region eu-west-1] [--static-dir web/static]

Reads the outputs of the CloudFormation stack ``skinscan-<stage>`` (as
``serverless.yml`` names it), uploads every file under ``web/static/`` except
its development ``config.js``, writes a ``config.js`` pointing the page at its
own domain's API path (``/api/classify``: CloudFront forwards it to the
classify function URL through origin access control, so the page needs no
CORS and the function URL itself is not public), removes objects the page no
longer has, and invalidates the CloudFront cache. ``--dry-run`` prints the
plan and touches nothing.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STATIC = REPO / "web" / "static"
DEFAULT_REGION = "eu-west-1"  # serverless.yml's default region
CONFIG_KEY = "config.js"
REQUIRED_OUTPUTS = ("PageApiUrl", "PageBucketName", "PageDistributionId", "PageUrl")
# The page's API on its own origin (serverless.yml: the /api/* behaviour of PageDistribution).
# Same-origin, so the page signs its POST body (x-amz-content-sha256) as origin access control needs.
API_PATH = "/api/classify"

# index.html and config.js must change as soon as a deploy does; the rest is
# not fingerprinted, so it is cached briefly.
REVALIDATE = "no-cache"
SHORT_CACHE = "public, max-age=300"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}


class DeployError(RuntimeError):
    pass


@dataclass(frozen=True)
class PageFile:
    key: str
    body: bytes
    content_type: str
    cache_control: str


def stack_name(stage: str) -> str:
    return f"skinscan-{stage}"


def stack_outputs(cloudformation, name: str) -> dict[str, str]:
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except Exception as error:  # botocore's ClientError, without importing botocore here
        raise DeployError(f"cannot read stack {name}: {error}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [key for key in REQUIRED_OUTPUTS if key not in outputs]
    if missing:
        raise DeployError(f"stack {name} has no output {', '.join(missing)}: was it deployed from serverless.yml?")
    return outputs


def config_js(function_url: str = API_PATH) -> str:
    """The page's runtime configuration: the same shape the local web server serves.

    ``function_url`` is a path on the page's own origin (the default, ``/api/classify``) or an
    ``https://`` URL; never plain http, never protocol-relative (``//host``).
    """
    same_origin = function_url.startswith("/") and not function_url.startswith("//")
    if not (same_origin or function_url.startswith("https://")):
        raise DeployError(f"the API URL must be a same-origin path (/api/classify) or https://…, "
                          f"not {function_url!r}")
    return f"window.SKINSCAN_CONFIG = {json.dumps({'functionUrl': function_url})};\n"


def content_type(path: Path) -> str:
    return CONTENT_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def page_files(static_dir: Path, function_url: str = API_PATH) -> list[PageFile]:
    """Everything to upload: the static files (no dotfiles, not their config.js) and the generated config.js."""
    if not (static_dir / "index.html").is_file():
        raise DeployError(f"{static_dir} has no index.html: is the page built?")
    files = []
    for path in sorted(p for p in static_dir.rglob("*") if p.is_file()):
        relative = path.relative_to(static_dir)
        if any(part.startswith(".") for part in relative.parts) or relative.as_posix() == CONFIG_KEY:
            continue
        cache = REVALIDATE if path.suffix.lower() == ".html" else SHORT_CACHE
        files.append(PageFile(relative.as_posix(), path.read_bytes(), content_type(path), cache))
    files.append(PageFile(CONFIG_KEY, config_js(function_url).encode("utf-8"),
                          CONTENT_TYPES[".js"], REVALIDATE))
    return files


def upload(s3, bucket: str, files: list[PageFile], prune: bool = True) -> list[str]:
    """Put the files; remove objects that are not part of the page any more. Returns the stale keys removed."""
    for item in files:
        s3.put_object(Bucket=bucket, Key=item.key, Body=item.body,
                      ContentType=item.content_type, CacheControl=item.cache_control)
    if not prune:
        return []
    wanted = {item.key for item in files}
    stale = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        stale += [o["Key"] for o in page.get("Contents", []) if o["Key"] not in wanted]
    for start in range(0, len(stale), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[start:start + 1000]],
                                                 "Quiet": True})
    return stale


def invalidate(cloudfront, distribution_id: str) -> str:
    response = cloudfront.create_invalidation(
        DistributionId=distribution_id,
        InvalidationBatch={"Paths": {"Quantity": 1, "Items": ["/*"]},
                           "CallerReference": f"skinscan-page-{time.time_ns()}"},
    )
    return response["Invalidation"]["Id"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--region", default=None, help=f"default: AWS_REGION, else {DEFAULT_REGION}")
    parser.add_argument("--static-dir", type=Path, default=DEFAULT_STATIC)
    parser.add_argument("--no-prune", action="store_true", help="keep objects the page no longer has")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    args = parser.parse_args(argv)

    import boto3

    session = boto3.session.Session(region_name=args.region)
    region = session.region_name or DEFAULT_REGION
    try:
        outputs = stack_outputs(session.client("cloudformation", region_name=region), stack_name(args.stage))
        files = page_files(args.static_dir, API_PATH)
    except DeployError as error:
        print(f"deploy-page: {error}", file=sys.stderr)
        return 1
    bucket = outputs["PageBucketName"]
    for item in files:
        print(f"{'would put' if args.dry_run else 'put'} s3://{bucket}/{item.key} "
              f"({item.content_type}; {item.cache_control})")
    if args.dry_run:
        return 0
    stale = upload(session.client("s3", region_name=region), bucket, files, prune=not args.no_prune)
    for key in stale:
        print(f"removed s3://{bucket}/{key}")
    invalidation = invalidate(session.client("cloudfront"), outputs["PageDistributionId"])
    print(f"CloudFront invalidation {invalidation} started; the page is at {outputs['PageUrl']}")
    print(f"config.js points at {API_PATH} (that is {outputs['PageApiUrl']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
