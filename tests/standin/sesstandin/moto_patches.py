"""moto (Secrets Manager + IAM) as the stand-in uses it: the patches that make moto 5 behave
like AWS where the rotator depends on it (:func:`patch_moto`), the IAM knobs, the test-only
record of every secret access key minted, and :class:`Moto`, direct access to moto's
in-process backends for the admin API, the SMTP emulator and the orchestrator."""

from __future__ import annotations

import json
import time
from typing import Any

from .common import ApiError, iso, naive_utc_to_epoch


def patch_moto() -> None:
    """Make moto 5 behave like AWS where the rotator depends on it.

    * ListSecretVersionIds: moto reports ``CreatedDate`` = now for every version;
      report the version's real creation time instead.
    * UpdateSecretVersionStage: moto does not move its internal "default version"
      when AWSCURRENT moves, so a later GetSecretValue without VersionStage returned
      the old value; keep it in sync.
    * PutSecretValue: moto silently overwrites a version that carries AWSPENDING even
      when it already has a *different* value; AWS answers ResourceExistsException.
      Filling the empty placeholder that RotateSecret made stays allowed, and it keeps
      the placeholder's creation time (moto reset it).
    * IAM access keys: moto stamps CreateDate with microseconds; IAM answers with
      whole seconds.  CreateDate is truncated to the second like AWS; the precise
      creation time is kept in ``standin_created`` (used for the propagation delay).
    * GetSecretValue of a version that has no value: AWS answers
      ResourceNotFoundException naming the VersionId / staging label asked for; moto
      named "staging label: AWSCURRENT" when asked by VersionId.
    """
    from moto.secretsmanager import models as sm
    from moto.secretsmanager.exceptions import ResourceExistsException, ResourceNotFoundException

    B = sm.SecretsManagerBackend
    if getattr(B, "_standin_patched", False):
        return
    B._standin_patched = True

    def list_secret_version_ids(self, secret_id):  # type: ignore[no-untyped-def]
        if secret_id not in self.secrets:
            raise sm.SecretNotFoundException()
        secret = self.secrets[secret_id]
        versions = []
        for version_id, version in secret.versions.items():
            versions.append({
                "CreatedDate": version.get("createdate"),
                "VersionId": version_id,
                "VersionStages": version["version_stages"],
            })
        return json.dumps({"ARN": secret.arn, "Name": secret.name, "Versions": versions})

    B.list_secret_version_ids = list_secret_version_ids

    orig_update_stage = B.update_secret_version_stage

    def update_secret_version_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id):  # type: ignore[no-untyped-def]
        res = orig_update_stage(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
        if version_stage == "AWSCURRENT" and move_to_version_id:
            secret = self.secrets[secret_id]
            secret.set_default_version_id(move_to_version_id)
        return res

    B.update_secret_version_stage = update_secret_version_stage

    orig_put = B.put_secret_value

    def put_secret_value(self, secret_id, secret_string, secret_binary, client_request_token, version_stages):  # type: ignore[no-untyped-def]
        created = None
        if client_request_token and secret_id in self.secrets:
            secret = self.secrets[secret_id]
            existing = secret.versions.get(client_request_token)
            if existing is not None:
                has_value = "secret_string" in existing or "secret_binary" in existing
                if has_value:
                    if existing.get("secret_string") != secret_string or existing.get("secret_binary") != secret_binary:
                        raise ResourceExistsException(
                            f"You can't use ClientRequestToken {client_request_token} because that value is "
                            f"already in use for a version of secret {secret.arn}.")
                    return secret.to_short_dict(include_version_stages=True, version_id=client_request_token)
                created = existing.get("createdate")
        res = orig_put(self, secret_id, secret_string, secret_binary, client_request_token, version_stages)
        if created is not None:
            v = self.secrets[secret_id].versions.get(client_request_token)
            if v is not None:
                v["createdate"] = created
        return res

    B.put_secret_value = put_secret_value

    orig_get = B.get_secret_value

    def get_secret_value(self, secret_id, version_id, version_stage):  # type: ignore[no-untyped-def]
        try:
            return orig_get(self, secret_id, version_id, version_stage)
        except ResourceNotFoundException as e:
            if version_id and secret_id in self.secrets and version_id in self.secrets[secret_id].versions:
                raise ResourceNotFoundException(
                    f"Secrets Manager can't find the specified secret value for VersionId: {version_id}") from e
            raise
        except sm.SecretHasNoValueException as e:  # type: ignore[attr-defined]
            if version_id:
                raise ResourceNotFoundException(
                    f"Secrets Manager can't find the specified secret value for VersionId: {version_id}") from e
            raise

    B.get_secret_value = get_secret_value

    from moto.iam import models as iam_models

    orig_key_init = iam_models.AccessKey.__init__

    def key_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        orig_key_init(self, *args, **kwargs)
        self.standin_created = time.time()
        # Every secret ever minted, for the tests' leak scans (GET /secrets-seen).
        SECRETS_SEEN.append({"access_key_id": self.access_key_id,
                             "secret_access_key": self.secret_access_key})
        self.create_date = self.create_date.replace(microsecond=0)

    iam_models.AccessKey.__init__ = key_init

    orig_list_keys = iam_models.IAMBackend.list_access_keys

    def list_access_keys(self, user_name):  # type: ignore[no-untyped-def]
        keys = orig_list_keys(self, user_name)
        lag = float(IAM_CONFIG.get("list_lag_seconds") or 0)
        if lag <= 0:
            return keys
        now = time.time()
        return [k for k in keys if now - key_created(k) >= lag]

    iam_models.IAMBackend.list_access_keys = list_access_keys


# IAM knobs. list_lag_seconds: ListAccessKeys leaves out keys younger than this, as IAM's
# eventual consistency can right after CreateAccessKey.
DEFAULT_IAM_CONFIG: dict[str, float] = {"list_lag_seconds": 0.0}
IAM_CONFIG: dict[str, float] = dict(DEFAULT_IAM_CONFIG)

# Test-only record of every secret access key moto minted (deleted keys included), so that
# tests can scan the rotator's output for each of them.
SECRETS_SEEN: list[dict[str, str]] = []


def key_created(key) -> float:  # type: ignore[no-untyped-def]
    """Precise creation time (epoch seconds) of a moto access key."""
    return getattr(key, "standin_created", None) or naive_utc_to_epoch(key.create_date)


class Moto:
    """Direct access to moto's in-process backends (same process as the server)."""

    def __init__(self, account: str, region: str):
        self.account = account
        self.region = region

    def iam(self):  # type: ignore[no-untyped-def]
        from moto.iam.models import iam_backends

        return iam_backends[self.account]["aws"]

    def sm(self):  # type: ignore[no-untyped-def]
        from moto.secretsmanager.models import secretsmanager_backends

        return secretsmanager_backends[self.account][self.region]

    def secret(self, secret_id: str):  # type: ignore[no-untyped-def]
        backend = self.sm()
        if secret_id not in backend.secrets:
            raise ApiError(404, "ResourceNotFoundException", f"secret {secret_id!r} not found")
        return backend.secrets[secret_id]

    def access_key(self, key_id: str):  # type: ignore[no-untyped-def]
        return self.iam().access_keys.get(key_id)

    def keys(self, user: str | None = None) -> list[dict[str, Any]]:
        out = []
        now = time.time()
        for name, u in list(self.iam().users.items()):
            if user is not None and name != user:
                continue
            for k in list(u.access_keys):
                created = key_created(k)
                out.append({
                    "access_key_id": k.access_key_id,
                    "user_name": name,
                    "status": k.status,
                    "age_seconds": round(now - created, 3),
                    "create_date": iso(naive_utc_to_epoch(k.create_date)),
                    "created": created,
                })
        return out

    def reset(self) -> None:
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()
