"""The role policy check: the strict template renderer (deploy/cfn.py) and the request
authorizer (sesstandin/policy.py), each against the behaviour it stands in for."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sesstandin import policy as P  # noqa: E402

import cfn  # noqa: E402  (put on sys.path by sesstandin.policy)

ACCT, REGION = "123456789012", "us-east-1"
PSEUDO = {"AWS::Region": REGION, "AWS::AccountId": ACCT, "AWS::Partition": "aws", "AWS::StackName": "s"}
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCT}:secret:smtp-AbCdEf"
KMS = f"arn:aws:kms:{REGION}:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def tiny(resources: dict, conditions: dict | None = None, params: dict | None = None) -> dict:
    return {"Parameters": params or {"P": {"Type": "String", "Default": "a"}},
            "Conditions": conditions or {}, "Resources": resources}


# -- the renderer -------------------------------------------------------------------------------
def test_an_intrinsic_the_renderer_does_not_resolve_is_refused_loudly() -> None:
    t = tiny({"R": {"Type": "AWS::SNS::Topic", "Properties": {"X": {"Fn::Base64": "a"}}}})
    with pytest.raises(cfn.Unresolved, match="Fn::Base64"):
        cfn.check_intrinsics(t)
    with pytest.raises(cfn.Unresolved, match="Fn::Base64"):
        cfn.Renderer(t, pseudo=PSEUDO).resource("R")


def test_refs_need_physical_ids_and_existing_resources() -> None:
    t = tiny({"U": {"Type": "AWS::IAM::User", "Condition": "No", "Properties": {"Path": "/p/"}},
              "V": {"Type": "AWS::IAM::User", "Properties": {"Path": "/p/"}},
              "R": {"Type": "AWS::SNS::Topic", "Properties": {"A": {"Ref": "U"}, "B": {"Fn::GetAtt": ["V", "Arn"]},
                                                             "C": {"Fn::GetAtt": ["V", "Nope"]}}}},
             {"No": {"Fn::Equals": ["1", "2"]}})
    r = cfn.Renderer(t, pseudo=PSEUDO, physical={"V": "bob"})
    with pytest.raises(cfn.Unresolved, match="condition is false"):
        r.ev({"Ref": "U"})
    assert r.ev({"Fn::GetAtt": ["V", "Arn"]}) == f"arn:aws:iam::{ACCT}:user/p/bob"
    with pytest.raises(cfn.Unresolved, match="V.Nope"):
        r.ev({"Fn::GetAtt": ["V", "Nope"]})
    with pytest.raises(cfn.Unresolved, match="no physical id"):
        cfn.Renderer(t, pseudo=PSEUDO).ev({"Ref": "V"})


def test_sub_join_select_split_and_parameters_as_cloudformation_computes_them() -> None:
    t = tiny({}, params={"L": {"Type": "CommaDelimitedList", "Default": "a,b"},
                         "N": {"Type": "Number", "Default": 587},
                         "S": {"Type": "String", "Default": "x", "AllowedValues": ["x", "y"]}})
    r = cfn.Renderer(t, {"S": "y"}, pseudo=PSEUDO)
    assert r.ev({"Fn::Sub": "${AWS::Region}-${S}-${!Literal}"}) == "us-east-1-y-${Literal}"
    assert r.ev({"Fn::Sub": ["${X}:${N}", {"X": {"Fn::Join": ["+", {"Ref": "L"}]}}]}) == "a+b:587"
    assert r.ev({"Fn::Select": [1, {"Fn::Split": [",", "p,q"]}]}) == "q"
    assert r.ev({"Fn::Equals": [{"Ref": "N"}, "587"]}) is True
    assert r.ev(["a", {"Ref": "AWS::NoValue"}]) == ["a"]
    with pytest.raises(cfn.Unresolved, match="not one of"):
        cfn.Renderer(t, {"S": "z"}, pseudo=PSEUDO)
    with pytest.raises(cfn.Unresolved, match="no such parameter"):
        cfn.Renderer(t, {"Nope": "z"}, pseudo=PSEUDO)


def render(params: dict, physical: dict | None = None) -> tuple[P.Policy, dict]:
    pol, env = P.render("template.yaml", params, physical or {}, {}, REGION, ACCT)
    return P.Policy("t", "t", pol["statements"], pol["managed"]), env


@pytest.mark.parametrize("params,physical", [
    ({"SmtpIamUserName": "u", "SmtpIamUserPath": "/team/"}, {"SmtpSecret": SECRET}),
    ({"Scope": "shared", "SmtpIamUserPath": "/team/"}, {}),
])
def test_the_template_sets_iam_user_path_to_the_policys_path_in_both_scopes(params: dict, physical: dict) -> None:
    policy, env = render(params, physical)
    assert env["IAM_USER_PATH"] == "/team/"
    user = f"arn:aws:iam::{ACCT}:user/team/u"
    for action in ("iam:GetUser", "iam:ListAccessKeys", "iam:CreateAccessKey", "iam:DeleteAccessKey",
                   "iam:UpdateAccessKey", "iam:GetAccessKeyLastUsed", "iam:ListUserTags"):
        assert policy.evaluate(action, user, {})[0] == "allow", action
        assert policy.evaluate(action, f"arn:aws:iam::{ACCT}:user/other/u", {})[0] == "implicit", action


def test_single_scope_allows_one_secret_and_one_user() -> None:
    policy, _ = render({"SmtpIamUserName": "u"}, {"SmtpSecret": SECRET})
    assert policy.evaluate("secretsmanager:PutSecretValue", SECRET, {})[0] == "allow"
    assert policy.evaluate("secretsmanager:PutSecretValue", SECRET.replace("smtp-", "other-"), {})[0] == "implicit"
    assert policy.evaluate("iam:GetUser", f"arn:aws:iam::{ACCT}:user/ses-smtp/v", {})[0] == "implicit"
    assert policy.evaluate("secretsmanager:DeleteSecret", SECRET, {})[0] == "implicit"


def test_shared_scope_needs_the_tag_and_kms_only_through_secrets_manager() -> None:
    policy, _ = render({"Scope": "shared", "KmsKeyArn": KMS})
    tagged = {"secretsmanager:ResourceTag/ses-smtp-rotator:managed": "true"}
    assert policy.evaluate("secretsmanager:GetSecretValue", SECRET, tagged)[0] == "allow"
    assert policy.evaluate("secretsmanager:GetSecretValue", SECRET, {})[0] == "implicit"
    assert policy.evaluate("secretsmanager:GetSecretValue", SECRET,
                           {"secretsmanager:ResourceTag/ses-smtp-rotator:managed": "false"})[0] == "implicit"
    via = {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com", "kms:EncryptionContext:SecretARN": SECRET}
    assert policy.evaluate("kms:Decrypt", KMS, via)[0] == "allow"
    assert policy.evaluate("kms:Decrypt", KMS, {**via, "kms:ViaService": "s3.us-east-1.amazonaws.com"})[0] == "implicit"
    assert policy.evaluate("kms:Decrypt", KMS, {})[0] == "implicit"


def test_tag_writes_are_limited_to_the_rotators_own_tag_keys() -> None:
    policy, _ = render({"SmtpIamUserName": "u"}, {"SmtpSecret": SECRET})
    user = f"arn:aws:iam::{ACCT}:user/ses-smtp/u"
    assert policy.evaluate("iam:TagUser", user, {"aws:TagKeys": ["ses-smtp-rotator:secret"]})[0] == "allow"
    assert policy.evaluate("iam:TagUser", user, {"aws:TagKeys": ["ses-smtp-rotator:x", "owner"]})[0] == "implicit"
    # The env the template gives the function says which scope it is in.
    assert render({"SmtpIamUserName": "u"}, {"SmtpSecret": SECRET})[1]["ROTATION_SCOPE"] == "single"


def test_shared_scope_cannot_write_the_owner_tag_but_can_keep_its_record() -> None:
    policy, env = render({"Scope": "shared"})
    assert env["ROTATION_SCOPE"] == "shared"
    user = f"arn:aws:iam::{ACCT}:user/ses-smtp/u"
    record = ["ses-smtp-rotator:key:AKIAABCDEFGHIJKLMNOP", "ses-smtp-rotator:creating-key",
              "ses-smtp-rotator:creating-key:0a1b2c3d.1765000000000.9f3e"]
    for action in ("iam:TagUser", "iam:UntagUser"):
        assert policy.evaluate(action, user, {"aws:TagKeys": record})[0] == "allow", action
        # Neither alone nor beside the record: no tenant's secret can claim (or unclaim) a user.
        assert policy.evaluate(action, user, {"aws:TagKeys": ["ses-smtp-rotator:secret"]})[0] == "implicit", action
        assert policy.evaluate(action, user, {"aws:TagKeys": [*record, "ses-smtp-rotator:secret"]})[0] == "implicit", action
        # Nor any other tag key under the prefix.
        assert policy.evaluate(action, user, {"aws:TagKeys": ["ses-smtp-rotator:secretx"]})[0] == "implicit", action


# -- the evaluator's semantics (IAM User Guide, policy evaluation and condition operators) --------
def one(st: dict) -> P.Policy:
    return P.Policy("t", "t", [{"_policy": "p", "Sid": "S", **st}], [])


def test_condition_semantics_for_absent_keys() -> None:
    forall = one({"Effect": "Allow", "Action": "iam:TagUser", "Resource": "*",
                  "Condition": {"ForAllValues:StringLike": {"aws:TagKeys": "a:*"}}})
    assert forall.evaluate("iam:TagUser", "x", {})[0] == "allow"  # absent: true (AWS's documented trap)
    assert forall.evaluate("iam:TagUser", "x", {"aws:TagKeys": ["a:1", "b"]})[0] == "implicit"
    eq = one({"Effect": "Allow", "Action": "*", "Resource": "*",
              "Condition": {"StringEquals": {"aws:ResourceTag/k": "v"}}})
    assert eq.evaluate("a:b", "x", {})[0] == "implicit"
    neq = one({"Effect": "Allow", "Action": "*", "Resource": "*",
               "Condition": {"StringNotEquals": {"aws:ResourceTag/k": "v"}}})
    assert neq.evaluate("a:b", "x", {})[0] == "allow"
    assert neq.evaluate("a:b", "x", {"aws:ResourceTag/k": "v"})[0] == "implicit"
    exists = one({"Effect": "Allow", "Action": "*", "Resource": "*",
                  "Condition": {"StringEqualsIfExists": {"aws:ResourceTag/k": "v"}}})
    assert exists.evaluate("a:b", "x", {})[0] == "allow"


def test_actions_match_without_case_resources_with_case_and_deny_wins() -> None:
    p = P.Policy("t", "t", [
        {"_policy": "p", "Sid": "A", "Effect": "Allow", "Action": "IAM:get*", "Resource": "arn:aws:iam::1:user/p/*"},
        {"_policy": "p", "Sid": "D", "Effect": "Deny", "Action": "iam:GetUser", "Resource": "arn:aws:iam::1:user/p/x"},
    ], [])
    assert p.evaluate("iam:GetAccessKeyLastUsed", "arn:aws:iam::1:user/p/y", {})[0] == "allow"
    assert p.evaluate("iam:GetAccessKeyLastUsed", "arn:aws:iam::1:user/P/y", {})[0] == "implicit"
    assert p.evaluate("iam:GetUser", "arn:aws:iam::1:user/p/x", {}) == ("deny", "D", [])


def test_what_the_stand_in_cannot_evaluate_is_refused_at_load() -> None:
    with pytest.raises(P.PolicyError, match="operator"):
        one({"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"DateGreaterThan": {"aws:CurrentTime": "x"}}})
    with pytest.raises(P.PolicyError, match="condition key"):
        one({"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"aws:SourceIp": "x"}}})
    with pytest.raises(P.PolicyError, match="policy variables"):
        one({"Effect": "Allow", "Action": "*", "Resource": "arn:aws:iam::1:user/${aws:username}"})
    with pytest.raises(P.PolicyError, match="managed"):
        P.Policy("t", "t", [], ["arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"])


def test_access_denied_is_answered_as_each_service_answers_it() -> None:
    status, headers, body = P.access_denied("iam", "User: x is not authorized")
    assert status.startswith("403")
    assert b"<Code>AccessDenied</Code>" in body and b"<Type>Sender</Type>" in body
    assert b'xmlns="https://iam.amazonaws.com/doc/2010-05-08/"' in body
    status, headers, body = P.access_denied("secretsmanager", "User: x is not authorized")
    assert status.startswith("400")
    assert json.loads(body) == {"__type": "AccessDeniedException", "Message": "User: x is not authorized"}
