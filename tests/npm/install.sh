#!/usr/bin/env bash
# Install the npm MCP servers the `npm` test group runs against, at pinned versions.
# Usage: bash tests/npm/install.sh [DIR]   (default: .npm-servers in the repository)
# Then: CODEX_RUNTIME_NPM_SERVERS=DIR python -m pytest -m npm tests/test_server_everything.py
# (DIR defaults to .npm-servers there too).
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${1:-.npm-servers}"
mkdir -p "$dir"
npm install --prefix "$dir" --no-audit --no-fund --no-save \
    "@modelcontextprotocol/server-everything@2026.8.31"
