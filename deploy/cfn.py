"""Render a CloudFormation template (template.yaml, deploy/app-stack.yaml) for one set of
parameter values, strictly: the values CloudFormation itself would compute, or an error.

Used by deploy/variants.py (the lint-time checks of each deployment variant) and by the test
stand-in (tests/standin/sesstandin/policy.py), which authorizes every AWS request of the binary
against the role policy rendered here, so that the tests run under the policy that is deployed.

What is resolved, exactly as CloudFormation does (AWS CloudFormation User Guide, "Intrinsic
function reference" and "Pseudo parameters reference"):

* ``Ref`` to a parameter (a String or Number parameter is its string value, a
  CommaDelimitedList a list of strings split on ","), to a pseudo parameter, or to a resource:
  its physical id, which is the rendered name property where the template sets one
  (:data:`NAME_PROPERTIES`: ``UserName``, ``LogGroupName``, ...), else supplied by the caller
  (``physical``: a secret's ARN, say, whose suffix only a deployment makes);
  ``AWS::NoValue`` removes the property or list item.
* ``Fn::GetAtt`` for the attributes of the resource types this project's templates read
  (:data:`ATTRIBUTES`), built from the supplied physical ids the way AWS names them.
* ``Fn::If``, ``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``, ``Condition``, the
  ``Conditions`` section and a resource's ``Condition`` (a resource whose condition is false
  does not exist: a ``Ref`` to it is an error, as CloudFormation's validation makes it).
* ``Fn::Sub`` (both forms; ``${!Literal}`` escapes), ``Fn::Join``, ``Fn::Split``,
  ``Fn::Select``, ``Fn::FindInMap``, ``Fn::ImportValue`` (from the caller's ``imports``).

Anything else (``Fn::GetAZs``, ``Fn::Base64``, ``Fn::Cidr``, ``Fn::Length``,
``Fn::ToJsonString``, a transform's macro, an attribute not in the table, a Ref to a resource
without a physical id) raises :class:`Unresolved` naming it: a template change that uses
something this renderer does not know fails the tests loudly instead of rendering loosely.
``Fn::Contains`` and the other rule functions are valid only in ``Rules``, which are checked by
cfn-lint (deploy/lint.sh), not rendered here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

# The intrinsic functions this renderer evaluates. A template that uses any other outside its
# Rules section is refused by :func:`check_intrinsics`.
SUPPORTED = frozenset({
    "Ref", "Condition", "Fn::If", "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Fn::Sub",
    "Fn::Join", "Fn::Split", "Fn::Select", "Fn::FindInMap", "Fn::GetAtt", "Fn::ImportValue",
})

NO_VALUE = object()


class Unresolved(Exception):
    """The template uses something this renderer does not resolve (or lacks a value for)."""


Prop = Callable[[str, str], Any]  # (property name, default) -> its rendered value


def _arn_user(p: dict[str, str], physical: str, prop: Prop) -> str:
    return f"arn:{p['AWS::Partition']}:iam::{p['AWS::AccountId']}:user{prop('Path', '/')}{physical}"


def _arn_role(p: dict[str, str], physical: str, prop: Prop) -> str:
    return f"arn:{p['AWS::Partition']}:iam::{p['AWS::AccountId']}:role{prop('Path', '/')}{physical}"


def _arn_log_group(p: dict[str, str], physical: str, prop: Prop) -> str:
    # AWS::Logs::LogGroup's Arn attribute ends in ":*" (CloudFormation resource reference).
    return f"arn:{p['AWS::Partition']}:logs:{p['AWS::Region']}:{p['AWS::AccountId']}:log-group:{physical}:*"


def _arn_function(p: dict[str, str], physical: str, prop: Prop) -> str:
    return f"arn:{p['AWS::Partition']}:lambda:{p['AWS::Region']}:{p['AWS::AccountId']}:function:{physical}"


# (resource type, attribute) -> how AWS builds it from the physical id and the resource's
# rendered properties.
ATTRIBUTES = {
    ("AWS::IAM::User", "Arn"): _arn_user,
    ("AWS::IAM::Role", "Arn"): _arn_role,
    ("AWS::Logs::LogGroup", "Arn"): _arn_log_group,
    ("AWS::Lambda::Function", "Arn"): _arn_function,
    ("AWS::Serverless::Function", "Arn"): _arn_function,
}

# The property that names a resource of these types: when the template sets it, it is the
# resource's physical id (its Ref). Without it CloudFormation generates the name.
NAME_PROPERTIES = {
    "AWS::IAM::User": "UserName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Serverless::Function": "FunctionName",
}


def load(path: str | Path) -> dict[str, Any]:
    """The template as data (cfn-lint's decoder: short-form tags become ``{"Fn::X": ...}``)."""
    from cfnlint.decode import decode

    template, matches = decode(str(path))
    if matches:
        raise Unresolved(f"cannot parse {path}: {matches}")
    check_intrinsics(template)
    return template


def check_intrinsics(template: dict[str, Any]) -> None:
    """Refuses a template that uses an intrinsic function this renderer does not evaluate
    anywhere but in its Rules section."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "Ref" or k == "Condition" and not isinstance(v, (dict, list)) or k.startswith("Fn::"):
                    found.add(k)
                walk(v)
        elif isinstance(node, list):
            for x in node:
                walk(x)

    for section, body in template.items():
        if section != "Rules":
            walk(body)
    unknown = sorted(f for f in found if f not in SUPPORTED)
    if unknown:
        raise Unresolved(f"the template uses {', '.join(unknown)}, which deploy/cfn.py does not resolve")


class Renderer:
    """One stack: the template, the parameter values (others take their Default), the pseudo
    parameters, the physical ids of the resources whose Ref or attributes are read, and the
    values of other stacks' exports."""

    def __init__(self, template: dict[str, Any], values: dict[str, str] | None = None, *,
                 pseudo: dict[str, str], physical: dict[str, str] | None = None,
                 imports: dict[str, str] | None = None):
        self.t = template
        self.pseudo = dict(pseudo)
        self.pseudo.setdefault("AWS::URLSuffix", "amazonaws.com")
        self.physical = dict(physical or {})
        self.imports = dict(imports or {})
        values = dict(values or {})
        params = template.get("Parameters", {})
        unknown = sorted(set(values) - set(params))
        if unknown:
            raise Unresolved(f"no such parameter: {', '.join(unknown)}")
        self.params: dict[str, Any] = {}
        for name, p in params.items():
            if name in values:
                raw = str(values[name])
            elif "Default" in p:
                raw = str(p["Default"])
            else:
                raise Unresolved(f"parameter {name} has no value and no Default")
            allowed = p.get("AllowedValues")
            kind = p.get("Type", "String")
            if kind == "CommaDelimitedList":
                self.params[name] = raw.split(",")
            elif kind in ("String", "Number"):
                if allowed is not None and raw not in [str(a) for a in allowed]:
                    raise Unresolved(f"parameter {name}={raw!r} is not one of {allowed}")
                pattern = p.get("AllowedPattern")
                if pattern and kind == "String" and not re.fullmatch(pattern, raw):
                    raise Unresolved(f"parameter {name}={raw!r} does not match {pattern}")
                self.params[name] = raw
            else:
                raise Unresolved(f"parameter {name} has type {kind}, which deploy/cfn.py does not resolve")
        self._conds: dict[str, bool] = {}
        self._evaluating: set[str] = set()

    # -- conditions, references -------------------------------------------------------------
    def cond(self, name: str) -> bool:
        if name not in self._conds:
            if name not in self.t.get("Conditions", {}):
                raise Unresolved(f"no condition {name}")
            if name in self._evaluating:
                raise Unresolved(f"condition {name} refers to itself")
            self._evaluating.add(name)
            value = self.ev(self.t["Conditions"][name])
            self._evaluating.discard(name)
            if not isinstance(value, bool):
                raise Unresolved(f"condition {name} is not a boolean: {value!r}")
            self._conds[name] = value
        return self._conds[name]

    def exists(self, resource: str) -> bool:
        r = self.t.get("Resources", {}).get(resource)
        return r is not None and ("Condition" not in r or self.cond(r["Condition"]))

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name.startswith("AWS::"):
            if name not in self.pseudo:
                raise Unresolved(f"no value for the pseudo parameter {name}")
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.t.get("Resources", {}):
            if not self.exists(name):
                raise Unresolved(f"Ref {name}: the resource's condition is false in this variant")
            return self.physical_id(name)
        raise Unresolved(f"Ref to unknown {name}")

    def prop(self, resource: str) -> Prop:
        """One rendered property of ``resource`` at a time (the others are not evaluated)."""
        props = self.t["Resources"][resource].get("Properties", {})
        return lambda name, default: self.ev(props[name]) if name in props else default

    def physical_id(self, resource: str) -> str:
        """The resource's physical id: given by the caller, or its rendered name property."""
        if resource in self.physical:
            return self.physical[resource]
        name_prop = NAME_PROPERTIES.get(self.t["Resources"][resource]["Type"])
        name = self.prop(resource)(name_prop, None) if name_prop else None
        if name is None or name is NO_VALUE:
            raise Unresolved(f"{resource}: no physical id given for it, and the template does not name it")
        return str(name)

    def get_att(self, resource: str, attribute: str) -> str:
        r = self.t.get("Resources", {}).get(resource)
        if r is None:
            raise Unresolved(f"Fn::GetAtt of unknown resource {resource}")
        if not self.exists(resource):
            raise Unresolved(f"Fn::GetAtt {resource}.{attribute}: the resource's condition is false")
        build = ATTRIBUTES.get((r["Type"], attribute))
        if build is None:
            raise Unresolved(f"Fn::GetAtt {resource}.{attribute} ({r['Type']}) is not resolved by deploy/cfn.py")
        return build(self.pseudo, self.physical_id(resource), self.prop(resource))

    def sub(self, text: str, extra: dict[str, Any]) -> str:
        def one(m: re.Match[str]) -> str:
            key = m.group(1)
            if key.startswith("!"):
                return "${" + key[1:] + "}"
            if key in extra:
                v = extra[key]
            elif "." in key and not key.startswith("AWS::"):
                res, att = key.split(".", 1)
                v = self.get_att(res, att)
            else:
                v = self.ref(key)
            if isinstance(v, list) or v is NO_VALUE:
                raise Unresolved(f"Fn::Sub of ${{{key}}}, which is not a string")
            return str(v)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    # -- evaluation ----------------------------------------------------------------------------
    def ev(self, node: Any) -> Any:
        if isinstance(node, list):
            out = [self.ev(x) for x in node]
            return [x for x in out if x is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((k, v),) = node.items()
            if k == "Ref":
                return self.ref(v)
            if k == "Condition" and isinstance(v, str):
                return self.cond(v)
            if k.startswith("Fn::"):
                return self.function(k, v)
        out = {}
        for k, v in node.items():
            value = self.ev(v)
            if value is not NO_VALUE:
                out[k] = value
        return out

    def function(self, name: str, v: Any) -> Any:
        if name == "Fn::Equals":
            a, b = (self.ev(x) for x in v)
            return _scalar(a) == _scalar(b)
        if name == "Fn::Not":
            return not self._bool(v[0])
        if name == "Fn::And":
            return all(self._bool(x) for x in v)
        if name == "Fn::Or":
            return any(self._bool(x) for x in v)
        if name == "Fn::If":
            return self.ev(v[1] if self.cond(v[0]) else v[2])
        if name == "Fn::Join":
            items = self.ev(v[1])
            if not isinstance(items, list):
                raise Unresolved(f"Fn::Join of a non-list {items!r}")
            return str(v[0]).join(str(x) for x in items)
        if name == "Fn::Split":
            return str(self.ev(v[1])).split(v[0])
        if name == "Fn::Select":
            items = self.ev(v[1])
            i = int(self.ev(v[0]))
            if not isinstance(items, list) or not 0 <= i < len(items):
                raise Unresolved(f"Fn::Select {i} out of {items!r}")
            return items[i]
        if name == "Fn::Sub":
            if isinstance(v, str):
                return self.sub(v, {})
            return self.sub(v[0], {k: self.ev(x) for k, x in v[1].items()})
        if name == "Fn::GetAtt":
            res, att = v if isinstance(v, list) else v.split(".", 1)
            return self.get_att(res, att)
        if name == "Fn::FindInMap":
            m, k1, k2 = (self.ev(x) for x in v)
            try:
                return self.t["Mappings"][m][k1][k2]
            except KeyError as e:
                raise Unresolved(f"Fn::FindInMap {m}/{k1}/{k2}: no such entry") from e
        if name == "Fn::ImportValue":
            export = self.ev(v)
            if export not in self.imports:
                raise Unresolved(f"Fn::ImportValue {export}: no value given for that export")
            return self.imports[export]
        raise Unresolved(f"{name} is not resolved by deploy/cfn.py")

    def _bool(self, node: Any) -> bool:
        value = self.ev(node)
        if not isinstance(value, bool):
            raise Unresolved(f"a condition function got {value!r}, not a boolean")
        return value

    def resource(self, name: str) -> dict[str, Any] | None:
        """The rendered properties of a resource, or None when its condition is false."""
        if name not in self.t.get("Resources", {}):
            raise Unresolved(f"no resource {name}")
        if not self.exists(name):
            return None
        return self.ev(self.t["Resources"][name].get("Properties", {}))


def _scalar(v: Any) -> Any:
    # Fn::Equals compares strings; a Number parameter is a string already.
    return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


def role_policy(r: Renderer, role: str = "RotatorRole") -> dict[str, Any]:
    """The identity-based policy of a role as deployed: its inline policies' statements, each
    tagged with the policy name, and the managed policy ARNs attached to it."""
    props = r.resource(role)
    if props is None:
        raise Unresolved(f"{role} does not exist in this variant")
    statements = []
    for pol in props.get("Policies", []):
        doc = pol["PolicyDocument"]
        for st in doc["Statement"]:
            statements.append({**st, "_policy": pol["PolicyName"]})
    return {"statements": statements, "managed": list(props.get("ManagedPolicyArns", []))}


def function_environment(r: Renderer, function: str = "RotatorFunction") -> dict[str, str]:
    """The function's environment variables as deployed (only that property is rendered)."""
    if not r.exists(function):
        raise Unresolved(f"{function} does not exist in this variant")
    # SAM's Globals (Function) come first; the function's own variables override them.
    glob = r.ev(r.t.get("Globals", {}).get("Function", {}).get("Environment", {}))
    env = r.ev(r.t["Resources"][function].get("Properties", {}).get("Environment", {}))
    return {k: str(v) for k, v in {**glob.get("Variables", {}), **env.get("Variables", {})}.items()}
