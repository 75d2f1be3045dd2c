"""Render the templates once per deployment variant and check what CloudFormation would build.

Run by deploy/lint.sh with the lint venv's Python (it uses cfn-lint's template decoder):

    python deploy/variants.py OUT_DIR

For every variant (Scope single/shared, ReplicaRegions unset/set/too many, alerting and KMS
on/off, the application stack) it writes OUT_DIR/<variant>.json: the template with the
variant's values as parameter defaults, so that cfn-lint, sam validate and checkov, which
resolve conditions from defaults, each see that variant. It then computes the values the
intrinsics build with deploy/cfn.py (strict: an intrinsic it does not resolve fails the run)
and checks the results that are easy to get wrong: the bootstrap document is valid JSON
with a "regions" array exactly when ReplicaRegions is set, the replica list matches it, a
sixth region is refused, the shared scope creates no secret, user or schedule, and the
reserved concurrency is 1 for a single secret and none for the shared function. One line per variant; exit 1 on a failure.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cfn  # noqa: E402  (the strict renderer the tests' role policy comes from too)

ROOT = Path(__file__).resolve().parent.parent
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-smtp-alerts"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "lint-stack",
    "AWS::URLSuffix": "amazonaws.com",
}
NO_VALUE = cfn.NO_VALUE

# name -> (template, parameter values, expectations)
VARIANTS = {
    "single": ("template.yaml", {}, {"regions": None, "reserved": 1}),
    "single-replicas": (
        "template.yaml",
        {"ReplicaRegions": "eu-west-1,us-west-2", "AlertTopicArn": TOPIC, "KmsKeyArn": KEY},
        {"regions": ["eu-west-1", "us-west-2"], "reserved": 1},
    ),
    "single-six-regions": (
        "template.yaml",
        {"ReplicaRegions": "eu-west-1,eu-west-2,eu-west-3,eu-north-1,eu-central-1,us-west-2"},
        {"regions": "too-many", "reserved": 1},
    ),
    "single-existing-secret": (
        "template.yaml",
        {
            "SecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:smtp-AbCdEf",
            "CreateSmtpUser": "false",
            "ReservedConcurrency": "none",
            "AlertTopicArn": TOPIC,
        },
        {"secret": False, "reserved": None},
    ),
    "shared": ("template.yaml", {"Scope": "shared"}, {"shared": True, "reserved": None}),
    "shared-alerts-kms": (
        "template.yaml",
        {
            "Scope": "shared",
            "AlertTopicArn": TOPIC,
            "KmsKeyArn": KEY,
            "ReservedConcurrency": "10",
            "ReplicaRegions": "eu-west-1",
        },
        {"shared": True, "reserved": 10},
    ),
    "app": ("deploy/app-stack.yaml", {"SecretName": "billing/ses-smtp", "SmtpIamUserName": "billing-smtp"}, {"regions": None}),
    "app-replicas": (
        "deploy/app-stack.yaml",
        {
            "SecretName": "billing/ses-smtp",
            "SmtpIamUserName": "billing-smtp",
            "ReplicaRegions": "eu-west-1",
            "NotificationTopicArn": TOPIC,
            "RotatorFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:shared-rotator",
            "SmtpIamUserPath": "/ses-smtp/",
        },
        {"regions": ["eu-west-1"]},
    ),
}


def renderer(template: dict, values: dict[str, str]) -> cfn.Renderer:
    """The strict renderer (deploy/cfn.py), every resource given a placeholder physical id and
    the shared stack's exports a value, so that any property can be rendered."""
    physical = {name: f"REF-{name}" for name in template.get("Resources", {})}
    imports = {"ses-smtp-rotator-SmtpIamUserPath": "/ses-smtp/",
               "ses-smtp-rotator-RotatorFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:shared-rotator"}
    return cfn.Renderer(template, values, pseudo=PSEUDO, physical=physical, imports=imports)


def check(name: str, ev: cfn.Renderer, exp: dict) -> str:
    """Check one variant; returns a short summary or raises AssertionError."""
    notes = []
    if exp.get("shared"):
        for res in ("SmtpSecret", "SmtpUser", "RotationSchedule"):
            assert ev.resource(res) is None, f"shared scope creates {res}"
        env = cfn.function_environment(ev)
        assert env["IAM_USER_PATH"] == ev.params["SmtpIamUserPath"], "IAM_USER_PATH"
        assert env["ROTATION_SCOPE"] == "shared", "ROTATION_SCOPE"
        assert cfn.function_environment(ev, "MaintenanceFunction") == env, "the maintenance's environment"
        perm = ev.resource("SecretsManagerInvokePermission")
        assert perm["SourceArn"].endswith(":secret:*") and perm["SourceAccount"], "invoke permission"
        notes.append("no secret/user/schedule, SourceArn secret:*")
    if "reserved" in exp:
        fn = ev.resource("RotatorFunction")
        got = fn.get("ReservedConcurrentExecutions")
        got = None if got is NO_VALUE else got
        assert (int(got) if got is not None else None) == exp["reserved"], f"reserved concurrency {got!r}"
        notes.append(f"reserved concurrency {got if got is not None else 'none'}")
    if exp.get("secret") is False:
        assert ev.resource("SmtpSecret") is None, "creates a secret although SecretArn is given"
        notes.append("no secret created")
    if "regions" in exp:
        secret = ev.resource("SmtpSecret")
        assert secret is not None, "no secret"
        doc = json.loads(secret["SecretString"])
        replicas = secret.get("ReplicaRegions", NO_VALUE)
        want = exp["regions"]
        if want is None:
            assert "regions" not in doc, f"regions field without ReplicaRegions: {doc}"
            assert replicas is NO_VALUE, "ReplicaRegions without the parameter"
            notes.append(f"document keys {sorted(doc)}")
        elif want == "too-many":
            assert replicas[-1]["Region"] == "ReplicaRegions-lists-more-than-5-regions", replicas
            assert len(replicas) == 6, replicas
            notes.append("6th region refused")
        else:
            assert doc.get("regions") == want, f"regions {doc.get('regions')!r} != {want!r}"
            assert [r["Region"] for r in replicas] == want, f"replicas {replicas!r}"
            notes.append(f"regions {want} = replicas")
        assert set(doc) >= {"iam_user", "host", "port"} and isinstance(doc["port"], int), doc
    return "; ".join(notes)


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name, (path, values, exp) in VARIANTS.items():
        try:
            template = cfn.load(ROOT / path)
        except cfn.Unresolved as e:
            print(f"{name}: {e}")
            return 1
        rendered = copy.deepcopy(template)
        for k, v in values.items():
            rendered["Parameters"][k]["Default"] = v
        (out / f"{name}.json").write_text(json.dumps(rendered, indent=1))
        try:
            summary = check(name, renderer(template, values), exp)
            print(f"  {name:24} ok    {summary}")
        except (AssertionError, KeyError, ValueError, TypeError, IndexError, cfn.Unresolved) as e:
            print(f"  {name:24} FAIL  {e}")
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
