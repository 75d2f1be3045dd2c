"""Local stand-in for the AWS services that ses-smtp-rotator talks to.

One process, everything on 127.0.0.1, every port picked by the process itself.
Start it as::

    .venv/bin/python tests/standin/standin.py [--region us-east-1] [--account 123456789012]
        [--smtp-regions us-east-1,eu-west-1]

(or ``python -m sesstandin`` from tests/standin). When it is ready it prints exactly ONE
JSON line on stdout (and flushes)::

    {"endpoint": "http://127.0.0.1:P1", "smtp_host": "127.0.0.1",
     "smtp_starttls_port": P2, "smtp_tls_port": P3,
     "smtp": {"us-east-1": {"starttls_port": P2, "tls_port": P3}, ...},
     "runtime_api": "127.0.0.1:P4",
     "admin": "http://127.0.0.1:P5", "ca_file": "/tmp/.../ca.pem",
     "region": "us-east-1", "account": "123456789012",
     "function_arn": "arn:aws:lambda:...", "lambda_env": {...}}

``smtp_starttls_port``/``smtp_tls_port`` are the primary region's (``--region``); ``smtp``
has one entry per SES region served (``--smtp-regions``; the primary is always served).
``lambda_env`` is a ready-made environment for the real binary (runtime API, function
name/memory/version that the lambda_runtime crate insists on, AWS endpoint, fake
credentials, SSL_CERT_FILE).  Everything else goes to stderr.  The process exits when
its stdin reaches EOF (the parent keeps stdin as a pipe; ``--no-stdin-watch`` turns that
off for manual use), or on SIGTERM/SIGINT.  The temp dir with the certificates is removed
at exit.

The parts (one module each)
---------------------------
1. **moto** (Secrets Manager + IAM) served over real HTTP by werkzeug's threaded server,
   reachable with ``AWS_ENDPOINT_URL=<endpoint>`` and any fake credentials. A few moto
   behaviours are patched to match AWS (:mod:`.moto_patches`).
   The WSGI app is wrapped in :class:`~.faults.FaultMiddleware` (:mod:`.faults`), which
   fails the next N matching requests (HTTP 500 before the action runs, ``fail_before``;
   after it ran with the response thrown away, ``fail_after``; AWS's throttling answer,
   ``throttle``), delays them, adds latency to every matching request, and logs every
   request with its answer (status, error code, CreateAccessKey's key id).
2. **SES SMTP emulator** (aiosmtpd, :mod:`.smtp`), one per SES region served: a STARTTLS
   listener and an implicit-TLS listener with a certificate from a CA made at start
   (``ca_file``, :mod:`.certs`).  AUTH PLAIN/LOGIN is accepted only with an IAM access key
   id that exists in moto, is Active, is older than ``propagation_delay_seconds``, and the
   SES SigV4 SMTP password for that emulator's region.  Knobs: ``propagation_delay_seconds``,
   ``force_454``, ``refuse_connections``, ``deny_send_from``, ``deny_at``.  Every AUTH attempt
   and every delivered message is recorded (never the password nor the AUTH lines).
3. **Lambda Runtime API** (``/2018-06-01/runtime/...``, :mod:`.runtime`) that the real binary
   polls, exactly like in Lambda; several binaries may poll at once.
4. **Rotation orchestrator** (:mod:`.orchestrator`) that behaves like Secrets Manager's
   RotateSecret: an empty AWSPENDING version for the token, then createSecret, setSecret,
   testSecret, finishSecret through the Runtime API, stopping at the first failure.
5. **Admin HTTP API** (JSON, :mod:`.admin`) to drive and inspect all of the above; its module
   docstring lists the endpoints, :data:`.admin.ROUTES` maps them to handlers.

:mod:`.app` wires the parts together and builds the ready line; :mod:`.cli` is the command
line (``main``); :mod:`.common` holds the shared helpers (the SES SMTP password derivation
among them).
"""
