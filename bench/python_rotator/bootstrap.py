"""A Lambda Runtime API client for lambda_function.py: what the Python runtime does in Lambda.

Init (the cold start): the interpreter starts, `lambda_function` is imported (boto3 and the
clients), then the loop polls GET /2018-06-01/runtime/invocation/next and answers each event
with POST .../{request id}/response or .../error. An import failure is posted to
/runtime/init/error. Only the standard library, like AWS's own runtime interface client in
spirit (awslambdaric speaks the same API through a small native HTTP client).

    AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT python bootstrap.py
"""

import http.client
import json
import logging
import os
import sys
import time
import traceback

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
PREFIX = "/2018-06-01/runtime"

logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                    format="%(asctime)s %(levelname)s %(message)s")


class Context:
    """The subset of LambdaContext the handler uses."""

    def __init__(self, request_id, deadline_ms, function_arn):
        self.aws_request_id = request_id
        self.invoked_function_arn = function_arn
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(0, self._deadline_ms - int(time.time() * 1000))


class RuntimeClient:
    """One keep-alive HTTP/1.1 connection to the Runtime API (reopened if it drops)."""

    def __init__(self, api):
        host, _, port = api.rpartition(":")
        self.host, self.port = host, int(port)
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port)  # no timeout: long poll
            try:
                self.conn.request(method, PREFIX + path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                return resp, resp.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise

    def post(self, path, obj, headers=None):
        body = json.dumps(obj).encode()
        self.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})


def error_body(e):
    return {"errorType": type(e).__name__, "errorMessage": str(e),
            "stackTrace": traceback.format_tb(e.__traceback__)}


def main():
    client = RuntimeClient(API)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        import lambda_function  # init: boto3 import and client creation
    except Exception as e:
        client.post("/init/error", error_body(e), {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"})
        raise
    while True:
        resp, body = client.request("GET", "/invocation/next")
        request_id = resp.getheader("Lambda-Runtime-Aws-Request-Id")
        ctx = Context(request_id, int(resp.getheader("Lambda-Runtime-Deadline-Ms") or 0),
                      resp.getheader("Lambda-Runtime-Invoked-Function-Arn"))
        try:
            result = lambda_function.lambda_handler(json.loads(body), ctx)
        except Exception as e:
            logging.error("%s: %s", type(e).__name__, e)
            client.post(f"/invocation/{request_id}/error", error_body(e),
                        {"Lambda-Runtime-Function-Error-Type": "Unhandled"})
            continue
        client.post(f"/invocation/{request_id}/response", result)


if __name__ == "__main__":
    main()
