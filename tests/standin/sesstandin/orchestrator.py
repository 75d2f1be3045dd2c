"""Rotation orchestrator that behaves like Secrets Manager's RotateSecret: an empty
AWSPENDING version for the token, then createSecret, setSecret, testSecret, finishSecret
through the Runtime API, stopping at the first failure; with ``rotate_immediately`` false,
only testSecret (as AWS does when rotation is first configured without rotating).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from .common import STEPS, ApiError
from .moto_patches import Moto
from .runtime import RuntimeApi

log = logging.getLogger("standin.orchestrator")


class Orchestrator:
    """Behaves like Secrets Manager's RotateSecret, invoking through the Runtime API."""

    def __init__(self, moto: Moto, runtime: RuntimeApi, function_arn: str):
        self.moto = moto
        self.runtime = runtime
        self.function_arn = function_arn
        self.lock = threading.Lock()  # one rotation at a time

    def set_rotation(self, secret_id: str, enabled: bool) -> dict[str, Any]:
        s = self.moto.secret(secret_id)
        s.rotation_requested = True
        s.rotation_enabled = bool(enabled)
        if not s.rotation_lambda_arn:
            s.rotation_lambda_arn = self.function_arn
        if enabled and not s.auto_rotate_after_days:
            s.auto_rotate_after_days = 30
        return {"arn": s.arn, "rotation_enabled": s.rotation_enabled}

    def versions(self, secret_id: str) -> list[dict[str, Any]]:
        s = self.moto.secret(secret_id)
        out = []
        for vid, v in s.versions.items():
            out.append({
                "version_id": vid,
                "stages": list(v["version_stages"]),
                "has_value": "secret_string" in v or "secret_binary" in v,
                "created_date": v.get("createdate"),
            })
        return out

    def create_pending(self, secret_id: str, token: str | None, force: bool = True) -> tuple[Any, str, bool]:
        """Empty AWSPENDING version for the token (reused when it exists).

        Returns (secret, token, created)."""
        s = self.moto.secret(secret_id)
        token = token or str(uuid.uuid4())
        if not 32 <= len(token) <= 64:
            raise ApiError(400, "InvalidParameterException", "ClientRequestToken must be 32-64 characters long.")
        for vid, v in s.versions.items():
            st = v["version_stages"]
            if vid != token and "AWSPENDING" in st and "AWSCURRENT" not in st and not force:
                raise ApiError(409, "InvalidRequestException",
                               "A previous rotation isn't complete. That rotation will be reattempted.")
        # AWSPENDING may sit on another version (finished rotation on AWSCURRENT, or a stale one).
        for vid, v in s.versions.items():
            if vid != token and "AWSPENDING" in v["version_stages"]:
                v["version_stages"].remove("AWSPENDING")
        if token in s.versions:
            v = s.versions[token]
            if "AWSPENDING" not in v["version_stages"] and "AWSCURRENT" not in v["version_stages"]:
                v["version_stages"].append("AWSPENDING")
            return s, token, False
        s.versions[token] = {
            "createdate": round(time.time(), 3),
            "version_id": token,
            "version_stages": ["AWSPENDING"],
        }
        return s, token, True

    def rotate(self, secret_id: str, token: str | None, rotate_immediately: bool = True,
               deadline_seconds: float = 300, force: bool = False) -> dict[str, Any]:
        with self.lock:
            s = self.moto.secret(secret_id)
            if not s.rotation_enabled or not s.rotation_lambda_arn:
                self.set_rotation(secret_id, True)
            try:
                s, token, created = self.create_pending(secret_id, token, force=force)
            except ApiError as e:
                return {"token": token, "ok": False, "error_type": e.error_type, "error_message": e.message,
                        "steps": []}
            rotation_token = str(uuid.uuid4())
            steps = STEPS if rotate_immediately else ["testSecret"]
            results = []
            ok = True
            for step in steps:
                event = {"Step": step, "SecretId": s.arn, "ClientRequestToken": token,
                         "RotationToken": rotation_token}
                log.info("rotation %s: invoking %s", token, step)
                _, res = self.runtime.invoke(event, deadline_seconds)
                r = {"step": step, "ok": res.get("ok", False), "duration_ms": res["duration_ms"]}
                for k in ("error_type", "error_message", "response"):
                    if res.get(k) is not None:
                        r[k] = res[k]
                results.append(r)
                if not r["ok"]:
                    ok = False
                    break
            if rotate_immediately and ok:
                v = s.versions.get(token)
                if v is not None and "AWSPENDING" in v["version_stages"]:
                    v["version_stages"].remove("AWSPENDING")
                s.last_rotation_date = int(time.time())
            if not rotate_immediately:
                v = s.versions.get(token)
                if created and v is not None and "secret_string" not in v and "secret_binary" not in v:
                    del s.versions[token]
                elif v is not None and "AWSPENDING" in v["version_stages"]:
                    v["version_stages"].remove("AWSPENDING")
            current = [vid for vid, v in s.versions.items() if "AWSCURRENT" in v["version_stages"]]
            return {
                "token": token,
                "rotation_token": rotation_token,
                "ok": ok,
                "steps": results,
                "current_version": current[0] if current else None,
                "versions": self.versions(secret_id),
            }
