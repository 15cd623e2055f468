#!/usr/bin/env bash
# Install the Debian packages the project needs, only those missing. Idempotent; quiet when all is there.
#   ensure-system-packages.sh run    what the agents and `make demo` need: Python's venv module
#                                    (python3-venv on Debian's own Python), bubblewrap (the task sandbox)
#   ensure-system-packages.sh test   that, and what the tests use too: Node.js and npm (the @polkadot/api
#                                    and IPFS compatibility checks), Chromium (the review page, driven
#                                    headless by Playwright), iproute2 (test hosts in network namespaces)
set -euo pipefail
purpose="${1:-test}"

missing=()
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
if [ "$purpose" = test ]; then
    command -v node >/dev/null 2>&1 || missing+=(nodejs)
    command -v npm >/dev/null 2>&1 || missing+=(npm)
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
fi

[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-system-packages: please install: ${missing[*]} (no apt-get here)" >&2
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "ensure-system-packages: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
