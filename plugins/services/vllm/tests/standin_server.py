"""A stand-in for an engine's OpenAI-compatible server, launched the way vLLM/SGLang are.

Takes their flags (model positional, --model or --model-path; --host, --port,
--served-model-name; the rest ignored) and serves /health, /v1/models and an echo chat.
With STANDIN_LLAMACPP=1 it serves the embedded SmolLM2 with llama.cpp's own server
(xllamacpp has no `python -m` server of its own). Other knobs, for tests, by environment:
STANDIN_ARGV_DIR (write argv as JSON to <port>.json there), STANDIN_DELAY_S (load time before listening),
STANDIN_EXIT (print it and exit 3), STANDIN_CHILD (a folder: start a worker like an
engine's TP ranks, write its pid to <port>.child there), STANDIN_IGNORE_TERM (ignore SIGTERM).
"""
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def flag(args, name, default=None):
    return args[args.index(name) + 1] if name in args else default


def main(args):
    env = os.environ
    model = flag(args, "--model") or flag(args, "--model-path") or next(a for a in args if a != "serve" and not a.startswith("-"))
    name = flag(args, "--served-model-name", model)
    host, port = flag(args, "--host", "127.0.0.1"), int(flag(args, "--port"))
    if env.get("STANDIN_ARGV_DIR"):
        with open(os.path.join(env["STANDIN_ARGV_DIR"], f"{port}.json"), "w") as f:
            json.dump(args, f)
    print(f"standin: loading {model} for {host}:{port}", flush=True)
    if env.get("STANDIN_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if env.get("STANDIN_CHILD"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(os.path.join(env["STANDIN_CHILD"], f"{port}.child"), "w") as f:
            f.write(str(child.pid))
    if env.get("STANDIN_EXIT"):
        print(f"standin: {env['STANDIN_EXIT']}", file=sys.stderr, flush=True)
        sys.exit(3)
    time.sleep(float(env.get("STANDIN_DELAY_S", 0)))
    if env.get("STANDIN_LLAMACPP"):
        return serve_llamacpp(name, host, port)

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
            self.reply({"status": "ok"} if self.path == "/health" else {"data": [{"id": name, "object": "model"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = f"echo: {body['messages'][-1]['content']}"
            self.reply({"model": name, "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split())}})

    ThreadingHTTPServer((host, port), Handler).serve_forever()


def serve_llamacpp(name, host, port):
    import xllamacpp
    from matrix_plugin_llamacpp import resolve_model

    p = xllamacpp.CommonParams()
    p.model.path = str(resolve_model(None)[0])
    p.model_alias = {name}
    p.hostnames, p.port = [host], port
    p.n_parallel, p.n_ctx = 2, 2048
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = 1
    p.warmup, p.ui = False, False
    server = xllamacpp.Server(p)
    while server:  # it serves while referenced
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1:])
