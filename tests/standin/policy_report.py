#!/usr/bin/env python3
"""Least privilege, measured: which granted actions the tests exercised, per deployment variant.

    python tests/standin/policy_report.py USAGE_DIR

Every stand-in started with STANDIN_POLICY_USAGE_DIR writes there, per variant of the role
policy it enforced (single, shared, shared-kms), how many of the binary's requests each action
allowed (sesstandin/policy.py). What each variant grants is rendered here from template.yaml. This script adds them up over the
whole test run and prints, per variant, every granted action with its count. An action no test
exercised must be justified in template.yaml by a comment

    # not-exercised-by-tests: ACTION [ACTION ...]: why

or the script fails: either a test is missing or the grant is not needed.

It also checks that README.md's "Least privilege" table of the execution role names exactly
the actions the template grants (rendered by deploy/cfn.py for the same variants), so the
documentation and the policy cannot drift. Exit status 1 on any finding.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "standin"))

from sesstandin.policy import Policy, render  # noqa: E402

ACCOUNT, REGION = "123456789012", "us-east-1"
KMS = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:smtp-AbCdEf"
# The variants the end-to-end tests run under (tests/common: Scope), rendered here alike.
VARIANTS = {
    "single": ({"SmtpIamUserName": "ses-smtp"}, {"SmtpSecret": SECRET}),
    "shared": ({"Scope": "shared"}, {}),
    "shared-kms": ({"Scope": "shared", "KmsKeyArn": KMS}, {}),
}


def justified(template_text: str) -> dict[str, str]:
    """action -> reason, from the template's not-exercised-by-tests comments (a reason may go
    on over the following comment lines)."""
    out: dict[str, str] = {}
    lines = template_text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*#\s*not-exercised-by-tests:\s*((?:[a-z0-9-]+:[A-Za-z0-9*]+\s*)+):\s*(.*)", line)
        if not m:
            continue
        reason = [m.group(2).strip()]
        for nxt in lines[i + 1:]:
            c = re.match(r"\s*#\s?(.*)", nxt)
            if not c or "not-exercised-by-tests:" in nxt:
                break
            reason.append(c.group(1).strip())
        for action in m.group(1).split():
            out[action] = " ".join(reason)
    return out


def readme_actions(readme: str) -> set[str]:
    """The actions named in the first column of README's execution-role table (a row like
    `secretsmanager:DescribeSecret`, `GetSecretValue` names both with the first's prefix)."""
    sect = readme.split("Execution role of the function (`RotatorRole`):", 1)[1].split("\n\n", 2)[1]
    actions: set[str] = set()
    for row in sect.splitlines()[2:]:
        first = row.split("|")[1].split("(")[0]  # "(only with `KmsKeyArn`)" is no action
        prefix = None
        for name in re.findall(r"`([A-Za-z0-9:*-]+)`", first):
            if ":" in name:
                prefix = name.split(":", 1)[0]
                actions.add(name)
            elif prefix:
                actions.add(f"{prefix}:{name}")
    return actions


def main() -> int:
    usage_dir = Path(sys.argv[1])
    merged: dict[str, dict[str, int]] = {}
    files = sorted(usage_dir.glob("standin-*.json"))
    for f in files:
        for variant, used in json.loads(f.read_text()).items():
            m = merged.setdefault(variant, {})
            for action, n in used.items():
                m[action] = m.get(action, 0) + n
    template = (ROOT / "template.yaml").read_text()
    reasons = justified(template)
    failed = 0
    print(f"role policy usage over {len(files)} stand-ins (template.yaml's RotatorRole, per variant):")
    rendered: set[str] = set()
    for variant, (params, physical) in VARIANTS.items():
        policy, _ = render("template.yaml", params, physical, {}, REGION, ACCOUNT)
        granted = Policy(variant, variant, policy["statements"], policy["managed"]).granted_actions()
        rendered |= granted
        exercised = merged.get(variant)
        if exercised is None:
            print(f"  {variant}: FAIL no test ran under this variant")
            failed = 1
            continue
        print(f"  {variant}:")
        for action in sorted(granted):
            n = exercised.get(action, 0)
            if n:
                print(f"    {action:38} exercised {n:6} times")
            elif action in reasons:
                print(f"    {action:38} not exercised (justified: {reasons[action]})")
            else:
                print(f"    {action:38} FAIL not exercised by any test and not justified in template.yaml")
                failed = 1
    documented = readme_actions((ROOT / "README.md").read_text())
    if documented != rendered:
        print("  README.md FAIL the execution-role table differs from template.yaml's policy:"
              f" only in README {sorted(documented - rendered)}, only in the template {sorted(rendered - documented)}")
        failed = 1
    else:
        print(f"  README.md: the execution-role table names exactly the {len(rendered)} granted actions")
    return failed


if __name__ == "__main__":
    sys.exit(main())
