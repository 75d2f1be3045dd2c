"""The stand-in as one object: builds every part, starts its servers on 127.0.0.1 (ports
picked by the OS), and returns the ready line. Also the process-wide reset and clean-up."""

from __future__ import annotations

import shutil
import tempfile
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from .certs import make_certs
from .common import FUNCTION_NAME, ApiError
from .faults import FaultMiddleware
from .moto_patches import DEFAULT_IAM_CONFIG, IAM_CONFIG, Moto, patch_moto
from .orchestrator import Orchestrator
from .policy import ROLE_ACCESS_KEY_ID, ROLE_SECRET_ACCESS_KEY, ROLE_SESSION_TOKEN, Authorizer
from .runtime import RuntimeApi, RuntimeHandler
from .smtp import SesSmtp


class Standin:
    """All the parts. ``region`` is the primary region (moto's, the Lambda's, and the SMTP
    emulator behind the ready line's ``smtp_starttls_port``/``smtp_tls_port``);
    ``smtp_regions`` are the SES regions with an SMTP emulator each (the primary is always
    one of them, first)."""

    def __init__(self, region: str, account: str, smtp_regions: list[str] | None = None):
        self.region = region
        self.account = account
        self.smtp_regions = [region] + [r for r in (smtp_regions or []) if r != region]
        self.smtp_regions = list(dict.fromkeys(self.smtp_regions))
        self.tmpdir = tempfile.mkdtemp(prefix="ses-standin-")
        self.function_arn = f"arn:aws:lambda:{region}:{account}:function:{FUNCTION_NAME}"
        self.moto = Moto(account, region)
        self.runtime = RuntimeApi(self.function_arn)
        self.orchestrator = Orchestrator(self.moto, self.runtime, self.function_arn)
        self.smtps: dict[str, SesSmtp] = {}
        self.servers: list[Any] = []
        self.authorizer = Authorizer(self.moto, FUNCTION_NAME)

    @property
    def smtp(self) -> SesSmtp:
        """The primary region's SMTP emulator."""
        return self.smtps[self.region]

    def smtp_for(self, region: str | None) -> SesSmtp:
        """The emulator of ``region`` (the primary when None or empty); 400 if not served."""
        if not region:
            return self.smtp
        if region not in self.smtps:
            raise ApiError(400, "ValidationError",
                           f"no SMTP emulator for region {region!r} (served: {', '.join(self.smtps)})")
        return self.smtps[region]

    def start(self) -> dict[str, Any]:
        from werkzeug.serving import make_server

        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        from .admin import AdminHandler

        patch_moto()
        ca_file, cert_file, key_file = make_certs(self.tmpdir, self.smtp_regions)

        # 1. moto, behind the fault middleware. threaded=True: one thread per request, so a
        # delayed request never holds up another.
        self.faults = FaultMiddleware(DomainDispatcherApplication(create_backend_app))
        self.faults.authorizer = self.authorizer
        moto_srv = make_server("127.0.0.1", 0, self.faults, threaded=True, request_handler=MotoRequestHandler)
        self.servers.append(moto_srv)
        threading.Thread(target=moto_srv.serve_forever, name="moto", daemon=True).start()
        moto_port = moto_srv.server_address[1]

        # 2. SMTP, one emulator per region
        for region in self.smtp_regions:
            smtp = SesSmtp(self.moto, region, self.account, cert_file, key_file, self.smtp_regions)
            smtp.start()
            self.smtps[region] = smtp

        # 3. Runtime API
        runtime_handler = type("BoundRuntimeHandler", (RuntimeHandler,), {"runtime": self.runtime})
        rt_srv = ThreadingHTTPServer(("127.0.0.1", 0), runtime_handler)
        rt_srv.daemon_threads = True
        self.servers.append(rt_srv)
        threading.Thread(target=rt_srv.serve_forever, name="runtime", daemon=True).start()

        # 5. admin (threaded: a long /invoke does not block other admin calls)
        admin_handler = type("BoundAdminHandler", (AdminHandler,), {"standin": self})
        ad_srv = ThreadingHTTPServer(("127.0.0.1", 0), admin_handler)
        ad_srv.daemon_threads = True
        self.servers.append(ad_srv)
        threading.Thread(target=ad_srv.serve_forever, name="admin", daemon=True).start()

        endpoint = f"http://127.0.0.1:{moto_port}"
        runtime_api = f"127.0.0.1:{rt_srv.server_address[1]}"
        return {
            "endpoint": endpoint,
            "smtp_host": "127.0.0.1",
            "smtp_starttls_port": self.smtp.starttls_port,
            "smtp_tls_port": self.smtp.tls_port,
            "smtp": {r: {"starttls_port": s.starttls_port, "tls_port": s.tls_port}
                     for r, s in self.smtps.items()},
            "runtime_api": runtime_api,
            "admin": f"http://127.0.0.1:{ad_srv.server_address[1]}",
            "ca_file": ca_file,
            "region": self.region,
            "account": self.account,
            "function_arn": self.function_arn,
            "lambda_env": {
                "AWS_LAMBDA_RUNTIME_API": runtime_api,
                "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
                "AWS_LAMBDA_LOG_STREAM_NAME": "standin",
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_ENDPOINT_URL": endpoint,
                # The function's role's temporary credentials, as Lambda gives them: every
                # request signed with them is authorized against the role policy rendered from
                # template.yaml (POST /policy; sesstandin/policy.py).
                "AWS_ACCESS_KEY_ID": ROLE_ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": ROLE_SECRET_ACCESS_KEY,
                "AWS_SESSION_TOKEN": ROLE_SESSION_TOKEN,
                "SSL_CERT_FILE": ca_file,
                # The emulators listen on localhost, which is no SES endpoint: allow it, as
                # an operator allows an own relay (DESIGN: the acceptance tests run so).
                "SMTP_ALLOWED_HOSTS": "localhost",
            },
        }

    def reset(self) -> None:
        """moto reset; knobs, faults, latency rules and every record cleared."""
        self.moto.reset()
        IAM_CONFIG.clear()
        IAM_CONFIG.update(DEFAULT_IAM_CONFIG)
        self.faults.clear()
        self.faults.clear_latency()
        self.faults.clear_records()
        self.authorizer.clear()
        for smtp in self.smtps.values():
            smtp.clear(config_too=True)
        self.runtime.clear()

    def cleanup(self) -> None:
        shutil.rmtree(self.tmpdir, ignore_errors=True)
