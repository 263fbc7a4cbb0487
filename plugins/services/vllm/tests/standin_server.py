"""A stand-in for a running vLLM/SGLang OpenAI-compatible server (no engine, no GPU here):
``standin_server.py MODEL --port N`` serves /health, /v1/models (MODEL) and an echo chat.
:func:`running` starts one in a subprocess for a test."""
import contextlib
import json
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextlib.contextmanager
def running(model: str, timeout_s: float = 60.0):
    """Yields the base URL (``.../v1``) of a stand-in serving ``model``; stops it after."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, model, "--port", str(port)])
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                httpx.get(url + "/models", timeout=1, trust_env=False)
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url, server
    finally:
        server.terminate()
        server.wait()


def main(args):
    model, port = args[0], int(args[args.index("--port") + 1])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, payload):
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.reply({"status": "ok"} if self.path == "/health" else {"data": [{"id": model, "object": "model"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = f"echo: {body['messages'][-1]['content']}"
            self.reply({"model": model, "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split())}})

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
