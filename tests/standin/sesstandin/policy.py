"""The role policy the binary runs under: every AWS request the binary signs with the
function's credentials is authorized here, before moto sees it, against the identity-based
policy rendered from ``template.yaml`` for the deployment under test (deploy/cfn.py), on the
action, the resource ARN and the condition keys of the request, as IAM does.

Why a small evaluator of our own (the choice weighed in the commit that added it): moto's own
enforcement (``INITIAL_NO_AUTH_ACTION_COUNT``) checks actions only, with every resource ``*``
and no condition keys, and the PyPI packages that know IAM policies either lint or expand them
(parliament, policyuniverse, policy_sentry, cloudsplaining) or prove properties with a solver
(iamspy): none answers "is this request, with this resource and these context keys, allowed".
What this module evaluates is the part of IAM's documented policy evaluation logic that an
identity-based policy of one role uses: explicit Deny over Allow over the implicit deny;
Action/NotAction matched case-insensitively with ``*``/``?``; Resource/NotResource matched
case-sensitively with ``*``/``?``; the condition operators in :data:`OPERATORS` with the
``ForAllValues:``/``ForAnyValue:`` set qualifiers and ``...IfExists``, every block ANDed and
a key's values ORed (IAM User Guide, "Policy evaluation logic", "IAM JSON policy elements:
Condition operators", "Single-valued vs. multivalued context keys"). Anything else in a
policy (an unknown operator, a condition key the stand-in does not put in the request
context, a policy variable, a managed policy whose text is not known here) is refused when
the policy is loaded, never evaluated loosely.

The request side (:func:`request_context`) names, per action the binary may call, the resource
ARN IAM authorizes against and the context keys it sets, following the Service Authorization
Reference (actions, resources and condition keys for IAM, Secrets Manager and KMS). An action
without an entry here is denied with a message saying so: a new AWS call in the code needs a
line here, which is also where its permission gets thought about.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "deploy"))

import cfn  # noqa: E402  (deploy/cfn.py: the strict template renderer)

from .faults import form_of, request_body  # noqa: E402

# The credentials the stand-in hands the binary (lambda_env): temporary credentials of the
# function's role, as Lambda gives them. Requests signed with any other key (the tests' own
# set-up and read-back, signed "test") are not the function's and are not authorized here.
ROLE_ACCESS_KEY_ID = "ASIAROTATORROLE00001"
ROLE_SECRET_ACCESS_KEY = "role/secret/of/the/rotator/function/0001"
ROLE_SESSION_TOKEN = "IQoJb3JpZ2luX2VjEStandinSessionTokenOfTheRotatorRole"
ROLE_NAME = "ses-smtp-rotator-RotatorRole"

# Condition operators evaluated here (without the ForAllValues:/ForAnyValue: qualifier and the
# IfExists suffix). Negated ones are true when the key is absent (IAM User Guide, condition
# operators: "...Not..." operators match when the key is not in the request context).
OPERATORS = {
    "StringEquals": (lambda have, want: have == want, False),
    "StringNotEquals": (lambda have, want: have != want, True),
    "StringEqualsIgnoreCase": (lambda have, want: have.lower() == want.lower(), False),
    "StringLike": (lambda have, want: _like(want, have), False),
    "StringNotLike": (lambda have, want: not _like(want, have), True),
    "ArnEquals": (lambda have, want: have == want, False),
    "ArnLike": (lambda have, want: _like(want, have), False),
    "ArnNotLike": (lambda have, want: not _like(want, have), True),
    "Bool": (lambda have, want: have.lower() == want.lower(), False),
}

# The context keys the stand-in puts in requests (a policy conditioning on another key would be
# evaluated as if the key were absent, silently: refused at load instead).
MODELLED_KEYS = (
    "aws:TagKeys", "aws:RequestTag/", "aws:ResourceTag/", "iam:ResourceTag/",
    "secretsmanager:ResourceTag/", "secretsmanager:SecretId", "kms:ViaService",
    "kms:EncryptionContext:SecretARN", "kms:EncryptionContext:SecretVersionId",
    "kms:CallerAccount",
)


class PolicyError(Exception):
    """A policy the stand-in refuses to evaluate (it would have to guess)."""


def _like(pattern: str, value: str) -> bool:
    """IAM's ``*``/``?`` wildcard match, case-sensitive (fnmatch would also read ``[``)."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, flags=re.S) is not None


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _check_statement(st: dict[str, Any]) -> None:
    if st.get("Effect") not in ("Allow", "Deny"):
        raise PolicyError(f"statement {st.get('Sid')!r}: Effect {st.get('Effect')!r}")
    if ("Action" in st) == ("NotAction" in st):
        raise PolicyError(f"statement {st.get('Sid')!r}: exactly one of Action/NotAction")
    if ("Resource" in st) == ("NotResource" in st):
        raise PolicyError(f"statement {st.get('Sid')!r}: exactly one of Resource/NotResource")
    if "Principal" in st or "NotPrincipal" in st:
        raise PolicyError(f"statement {st.get('Sid')!r}: a Principal in an identity-based policy")
    for field in ("Resource", "NotResource"):
        for r in _as_list(st.get(field, [])):
            if not isinstance(r, str) or "${" in r:
                raise PolicyError(f"statement {st.get('Sid')!r}: resource {r!r} (policy variables are not evaluated here)")
    for op, block in (st.get("Condition") or {}).items():
        base = op.split(":", 1)[1] if op.startswith(("ForAllValues:", "ForAnyValue:")) else op
        base = base[: -len("IfExists")] if base.endswith("IfExists") else base
        if base not in OPERATORS and base != "Null":
            raise PolicyError(f"statement {st.get('Sid')!r}: condition operator {op} is not evaluated by the stand-in")
        for key in block:
            if not key.startswith(MODELLED_KEYS) or key.endswith("/"):
                raise PolicyError(f"statement {st.get('Sid')!r}: condition key {key} is not in the stand-in's request contexts")


def _condition_holds(op: str, key: str, wanted: Any, ctx: dict[str, Any]) -> bool:
    wants = [str(w) if not isinstance(w, bool) else str(w).lower() for w in _as_list(wanted)]
    present = key in ctx
    have = ctx.get(key)
    if op == "Null":
        return (not present) == (wants[0].lower() == "true")
    qualifier = None
    if op.startswith(("ForAllValues:", "ForAnyValue:")):
        qualifier, op = op.split(":", 1)
    if_exists = op.endswith("IfExists")
    if if_exists:
        op = op[: -len("IfExists")]
    match, negated = OPERATORS[op]
    if qualifier == "ForAllValues":
        # True when the key is absent or empty; else every value matches some wanted value.
        return all(any(match(str(h), w) for w in wants) for h in _as_list(have or []))
    if qualifier == "ForAnyValue":
        return any(any(match(str(h), w) for w in wants) for h in _as_list(have or []))
    if not present:
        return if_exists or negated
    values = _as_list(have)
    if negated:
        # A negated operator matches when no wanted value matches in the positive sense.
        return all(match(str(h), w) for h in values for w in wants)
    return any(match(str(h), w) for h in values for w in wants)


def _statement_matches(st: dict[str, Any], action: str, resource: str, ctx: dict[str, Any]) -> tuple[bool, str]:
    """(applies, why not): whether the statement covers the request."""
    if "Action" in st:
        if not any(_like(a.lower(), action.lower()) for a in _as_list(st["Action"])):
            return False, "action"
    elif any(_like(a.lower(), action.lower()) for a in _as_list(st["NotAction"])):
        return False, "action"
    if "Resource" in st:
        if not any(_like(r, resource) for r in _as_list(st["Resource"])):
            return False, "resource"
    elif any(_like(r, resource) for r in _as_list(st["NotResource"])):
        return False, "resource"
    for op, block in (st.get("Condition") or {}).items():
        for key, wanted in block.items():
            if not _condition_holds(op, key, wanted, ctx):
                return False, f"condition {op} {key}"
    return True, ""


class Policy:
    """One rendered identity-based policy (the role of one deployed stack)."""

    def __init__(self, label: str, variant: str, statements: list[dict[str, Any]], managed: list[str]):
        if managed:
            raise PolicyError(f"{label}: managed policies {managed} are attached; their text is not known to the stand-in")
        for st in statements:
            _check_statement(st)
        self.label = label
        self.variant = variant
        self.statements = statements

    def granted_actions(self) -> set[str]:
        out: set[str] = set()
        for st in self.statements:
            if st["Effect"] == "Allow" and "Action" in st:
                out.update(_as_list(st["Action"]))
        return out

    def evaluate(self, action: str, resource: str, ctx: dict[str, Any]) -> tuple[str, str | None, list[str]]:
        """("allow"|"deny"|"implicit", the deciding statement's Sid, why each Allow statement
        naming the action did not apply)."""
        allowed_by = None
        misses = []
        for st in self.statements:
            ok, why = _statement_matches(st, action, resource, ctx)
            sid = st.get("Sid") or f"{st['_policy']}#?"
            if ok and st["Effect"] == "Deny":
                return "deny", sid, []
            if ok and allowed_by is None:
                allowed_by = sid
            elif not ok and st["Effect"] == "Allow" and why != "action":
                misses.append(f"{sid} grants {action} but not this {why}")
        if allowed_by:
            return "allow", allowed_by, []
        return "implicit", None, misses


@functools.lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int) -> dict[str, Any]:
    """The decoded template, once per file version (a test binds a stack per secret it makes;
    the Renderer never changes the template)."""
    return cfn.load(path)


def render(template: str, parameters: dict[str, str], physical: dict[str, str], imports: dict[str, str],
           region: str, account: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The role policy and the function's environment of one stack of ``template``."""
    path = ROOT / template
    t = _load(path, path.stat().st_mtime_ns)
    r = cfn.Renderer(t, parameters, physical=physical, imports=imports, pseudo={
        "AWS::Region": region, "AWS::AccountId": account, "AWS::Partition": "aws",
        "AWS::StackName": "standin-stack", "AWS::URLSuffix": "amazonaws.com"})
    return cfn.role_policy(r), cfn.function_environment(r)


# -- the request side -------------------------------------------------------------------------
class Request:
    """What IAM authorizes: the action (``service:Name``), the resource ARN and the context."""

    def __init__(self, action: str, resource: str, context: dict[str, Any], described: str):
        self.action = action
        self.resource = resource
        self.context = context
        self.described = described  # how AWS names the resource in an AccessDenied message


def _json_body(environ: dict[str, Any]) -> dict[str, Any]:
    try:
        obj = json.loads(request_body(environ) or b"{}")
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


def user_arn(moto: Any, name: str) -> str:
    """The ARN IAM authorizes a request on user ``name`` against: with the user's path when
    the user exists; a user that does not exist has no path, so its ARN is ``user/NAME``."""
    user = moto.iam().users.get(name)
    path = user.path if user is not None else "/"
    return f"arn:aws:iam::{moto.account}:user{path}{name}"


def _user_tags(moto: Any, name: str) -> dict[str, str]:
    if name not in moto.iam().users:
        return {}
    return {t["Key"]: t["Value"] for t in moto.iam().list_user_tags(name)}


def _resource_tag_keys(prefix: str, tags: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tags.items():
        out[f"aws:ResourceTag/{k}"] = v
        out[f"{prefix}:ResourceTag/{k}"] = v
    return out


IAM_USER_ACTIONS = {"ListAccessKeys", "CreateAccessKey", "UpdateAccessKey", "DeleteAccessKey",
                    "GetUser", "ListUserTags", "TagUser", "UntagUser"}
SM_SECRET_ACTIONS = {"DescribeSecret", "GetSecretValue", "PutSecretValue", "UpdateSecretVersionStage",
                     "ListSecretVersionIds"}


# GetAccessKeyLastUsed of an access key id that does not exist: AWS answers 403 AccessDenied
# (its API reference lists no NoSuchEntity for this action, unlike every other key action;
# localstack recorded the answer against AWS), moto answers NoSuchEntity. The stand-in answers
# as AWS does unless a test asks for moto's answer (POST /policy {"missing_key_answer"}).
MISSING_KEY_ANSWERS = ("AccessDenied", "NoSuchEntity")
MISSING_KEY_DEFAULT = "AccessDenied"


class MissingKey(Exception):
    """GetAccessKeyLastUsed of a key that does not exist (answered per the IAM knob)."""


def request_context(moto: Any, service: str, action: str, environ: dict[str, Any]) -> list[Request]:
    """The authorization requests one AWS request makes: the action itself, plus the KMS calls
    Secrets Manager makes on the caller's behalf for a secret encrypted with a customer managed
    key (whose permissions are the caller's: Secrets Manager user guide, "Secret encryption
    and decryption")."""
    acct, region = moto.account, moto.region
    if service == "iam":
        form = form_of(environ)
        one = lambda k: (form.get(k) or [""])[0]  # noqa: E731
        if action in IAM_USER_ACTIONS:
            name = one("UserName")
            if not name:
                raise PolicyError(f"iam:{action} without UserName (the caller's own user) is not modelled")
            ctx = _resource_tag_keys("iam", _user_tags(moto, name))
            if action == "TagUser":
                keys = [v[0] for k, v in sorted(form.items()) if re.fullmatch(r"Tags\.member\.\d+\.Key", k)]
                ctx["aws:TagKeys"] = keys
                for i, key in enumerate(keys):
                    val = one(f"Tags.member.{i + 1}.Value")
                    ctx[f"aws:RequestTag/{key}"] = val
            if action == "UntagUser":
                ctx["aws:TagKeys"] = [v[0] for k, v in sorted(form.items()) if re.fullmatch(r"TagKeys\.member\.\d+", k)]
            return [Request(f"iam:{action}", user_arn(moto, name), ctx, f"user {name}")]
        if action == "GetAccessKeyLastUsed":
            key_id = one("AccessKeyId")
            key = moto.access_key(key_id)
            if key is None:
                raise MissingKey(key_id)
            name = key.user_name
            return [Request("iam:GetAccessKeyLastUsed", user_arn(moto, name),
                            _resource_tag_keys("iam", _user_tags(moto, name)), f"user {name}")]
        if action == "SimulatePrincipalPolicy":
            arn = one("PolicySourceArn")
            return [Request("iam:SimulatePrincipalPolicy", arn, {}, arn)]
        raise PolicyError(f"iam:{action} has no resource rule in the stand-in (tests/standin/sesstandin/policy.py)")
    if service == "secretsmanager":
        body = _json_body(environ)
        if action in SM_SECRET_ACTIONS:
            sid = str(body.get("SecretId", ""))
            backend = moto.sm()
            secret = backend.secrets[sid] if sid in backend.secrets else None
            # Secrets Manager names the resource in AccessDenied as the caller gave SecretId.
            if secret is None:
                arn = sid if sid.startswith("arn:") else f"arn:aws:secretsmanager:{region}:{acct}:secret:{sid}"
                return [Request(f"secretsmanager:{action}", arn, {"secretsmanager:SecretId": arn}, sid)]
            tags = {t["Key"]: t["Value"] for t in (secret.tags or [])}
            ctx = {"secretsmanager:SecretId": secret.arn, **_resource_tag_keys("secretsmanager", tags)}
            out = [Request(f"secretsmanager:{action}", secret.arn, ctx, sid)]
            kms = kms_key_arn(getattr(secret, "kms_key_id", None), region, acct)
            if kms and action in ("GetSecretValue", "PutSecretValue"):
                # Secrets Manager user guide, "Secret encryption and decryption": GetSecretValue
                # calls kms:Decrypt; PutSecretValue kms:GenerateDataKey, and kms:Decrypt too when
                # the version already holds a value (its idempotency check). Encryption context
                # {"SecretARN", "SecretVersionId"}, kms:ViaService secretsmanager.<region>.amazonaws.com.
                version = str(body.get("VersionId") or body.get("ClientRequestToken") or "")
                kctx = {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com",
                        "kms:EncryptionContext:SecretARN": secret.arn,
                        "kms:EncryptionContext:SecretVersionId": version, "kms:CallerAccount": acct}
                if action == "PutSecretValue":
                    out.append(Request("kms:GenerateDataKey", kms, kctx, kms))
                    existing = secret.versions.get(version) if version else None
                    if existing is not None and ("secret_string" in existing or "secret_binary" in existing):
                        out.append(Request("kms:Decrypt", kms, kctx, kms))
                else:
                    out.append(Request("kms:Decrypt", kms, kctx, kms))
            return out
        if action == "ListSecrets":
            return [Request("secretsmanager:ListSecrets", "*", {}, "*")]
        raise PolicyError(f"secretsmanager:{action} has no resource rule in the stand-in (tests/standin/sesstandin/policy.py)")
    raise PolicyError(f"a request to service {service!r} ({action}) has no rule in the stand-in")


def kms_key_arn(key_id: str | None, region: str, account: str) -> str | None:
    """The customer managed key of a secret as an ARN, or None for the AWS managed key."""
    if not key_id or key_id in ("alias/aws/secretsmanager",):
        return None
    if key_id.startswith("arn:"):
        return key_id
    if key_id.startswith("alias/"):
        raise PolicyError(f"secret encrypted with {key_id}: give the key's ARN in tests")
    return f"arn:aws:kms:{region}:{account}:key/{key_id}"


# -- the authorizer ---------------------------------------------------------------------------
class Authorizer:
    """The policies in force (one per deployed stack; a request is allowed when one of them
    allows it and none denies it), the record of every decision, and the AccessDenied answers.

    With no policy loaded the function's requests are refused: a test must say which
    deployment it runs as."""

    def __init__(self, moto: Any, function_name: str):
        self.moto = moto
        self.function_name = function_name
        self.lock = threading.Lock()
        self.policies: list[Policy] = []
        self.decisions: list[dict[str, Any]] = []
        self.missing_key_answer = MISSING_KEY_DEFAULT
        self.usage_dir = os.environ.get("STANDIN_POLICY_USAGE_DIR") or None
        # variant -> action -> requests it allowed (written to STANDIN_POLICY_USAGE_DIR for
        # tests/standin/policy_report.py).
        self._usage: dict[str, dict[str, int]] = {}
        self._usage_file = None
        if self.usage_dir:
            Path(self.usage_dir).mkdir(parents=True, exist_ok=True)
            self._usage_file = Path(self.usage_dir) / f"standin-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"

    @property
    def principal(self) -> str:
        return f"arn:aws:sts::{self.moto.account}:assumed-role/{ROLE_NAME}/{self.function_name}"

    # -- configuration ---------------------------------------------------------------------
    def add(self, label: str, variant: str, template: str, parameters: dict[str, str],
            physical: dict[str, str], imports: dict[str, str],
            statements: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Adds (or replaces, by label) one stack's policy: rendered from ``template``, or
        given as ``statements`` (a documented policy, e.g. README's for doctor)."""
        try:
            if statements is not None:
                policy = {"statements": [{**st, "_policy": label} for st in statements], "managed": []}
                environment: dict[str, str] = {}
            else:
                policy, environment = render(template, parameters, physical, imports, self.moto.region, self.moto.account)
            p = Policy(label, variant, policy["statements"], policy["managed"])
        except (cfn.Unresolved, PolicyError, KeyError) as e:
            from .common import ApiError

            raise ApiError(400, "PolicyRenderError", f"{template} {parameters}: {e}") from e
        with self.lock:
            self.policies = [x for x in self.policies if x.label != label] + [p]
        return {"label": label, "variant": variant, "statements": p.statements, "environment": environment}

    def clear(self) -> None:
        with self.lock:
            self.policies.clear()
            self.decisions.clear()
            self.missing_key_answer = MISSING_KEY_DEFAULT

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "principal": self.principal,
                "missing_key_answer": self.missing_key_answer,
                "policies": [{"label": p.label, "variant": p.variant, "statements": p.statements} for p in self.policies],
                "decisions": [dict(d) for d in self.decisions],
                "denials": [dict(d) for d in self.decisions if d["decision"] == "deny"],
            }

    def _write_usage(self) -> None:
        if not self._usage_file:
            return
        # Under the lock: two request threads must not write the same temporary file at once;
        # the rename keeps the file whole for policy_report.py if the stand-in is killed.
        with self.lock:
            tmp = self._usage_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._usage, sort_keys=True))
            tmp.replace(self._usage_file)

    # -- a request -------------------------------------------------------------------------
    @staticmethod
    def is_function(environ: dict[str, Any]) -> bool:
        return f"Credential={ROLE_ACCESS_KEY_ID}/" in environ.get("HTTP_AUTHORIZATION", "")

    def authorize(self, service: str, action: str, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """None when the request may go on to moto; else the error answer to send."""
        try:
            reqs = request_context(self.moto, service, action, environ)
        except MissingKey as e:
            return self._missing_key(str(e))
        except PolicyError as e:
            return self._deny(service, action, "?", "?", f"the stand-in cannot authorize it: {e}")
        for req in reqs:
            with self.lock:
                policies = list(self.policies)
            verdicts = [(p, *p.evaluate(req.action, req.resource, req.context)) for p in policies]
            denied_by = [(p, sid) for p, d, sid, _ in verdicts if d == "deny"]
            allowed_by = [(p, sid) for p, d, sid, _ in verdicts if d == "allow"]
            if allowed_by and not denied_by:
                p, sid = allowed_by[0]
                self._record(req, "allow", f"{p.label}:{sid}", p.variant)
                continue
            if not policies:
                why = "no deployment is bound to this stand-in (the test must say which stack it runs as)"
            elif denied_by:
                why = "explicitly denied by " + ", ".join(f"{p.label}:{s}" for p, s in denied_by)
            else:
                misses = [f"{p.label}: {m}" for p, _, _, ms in verdicts for m in ms]
                why = ("no statement allows it" + (" (" + "; ".join(misses) + ")" if misses else
                                                    f" (no statement grants {req.action} at all)"))
            return self._deny(service, req.action, req.resource, req.described, why, explicit=bool(denied_by))
        return None

    def _record(self, req: Request, decision: str, by: str, variant: str) -> None:
        with self.lock:
            self.decisions.append({"action": req.action, "resource": req.resource, "decision": decision, "by": by})
            used = self._usage.setdefault(variant, {})
            changed = req.action not in used
            used[req.action] = used.get(req.action, 0) + 1
        if changed:
            self._write_usage()

    def _deny(self, service: str, action: str, resource: str, described: str, why: str,
              explicit: bool = False) -> tuple[str, list[tuple[str, str]], bytes]:
        with self.lock:
            self.decisions.append({"action": action, "resource": resource, "decision": "deny", "by": why})
        if service == "secretsmanager" and action.startswith("kms:"):
            # Secrets Manager's own words when the caller may not use the secret's key.
            return access_denied(service, "Access to KMS is not allowed")
        # IAM's wording (IAM User Guide, "Troubleshoot access denied error messages").
        kind = "an explicit deny in an identity-based policy" if explicit else "no identity-based policy allows the " + action + " action"
        msg = f"User: {self.principal} is not authorized to perform: {action} on resource: {described} because {kind}"
        return access_denied(service, msg)

    def _missing_key(self, key_id: str) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """GetAccessKeyLastUsed of a key that does not exist: moto answers NoSuchEntity; AWS
        answers AccessDenied (the knob ``missing_key_answer``; see the module's README note)."""
        with self.lock:
            answer = self.missing_key_answer
            self.decisions.append({"action": "iam:GetAccessKeyLastUsed", "resource": f"access key {key_id}",
                                   "decision": "missing-key", "by": answer})
        if answer == "NoSuchEntity":
            return None
        # As AWS answers it (recorded against AWS in localstack's
        # tests/aws/services/iam/test_iam_users.snapshot.json, test_access_key_errors): no colon
        # after "perform", no "because" clause.
        msg = (f"User: {self.principal} is not authorized to perform iam:GetAccessKeyLastUsed on resource: "
               f"access key {key_id}")
        return access_denied("iam", msg)


def access_denied(service: str, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """AccessDenied as each service answers it: IAM (query protocol) HTTP 403 with an XML
    ErrorResponse, code AccessDenied; Secrets Manager (JSON protocol) HTTP 400 with
    ``__type`` AccessDeniedException."""
    from xml.sax.saxutils import escape

    rid = str(uuid.uuid4())
    if service == "iam":
        body = ('<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">\n  <Error>\n'
                "    <Type>Sender</Type>\n    <Code>AccessDenied</Code>\n"
                f"    <Message>{escape(message)}</Message>\n  </Error>\n"
                f"  <RequestId>{rid}</RequestId>\n</ErrorResponse>\n").encode()
        return "403 Forbidden", [("Content-Type", "text/xml"), ("Content-Length", str(len(body))),
                                 ("x-amzn-RequestId", rid)], body
    body = json.dumps({"__type": "AccessDeniedException", "Message": message}).encode()
    return "400 Bad Request", [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body))),
                               ("x-amzn-RequestId", rid)], body


__all__ = ["Authorizer", "Policy", "PolicyError", "access_denied", "render"]
