#!/usr/bin/env bash
# Debian packages the test suite needs beyond Python: Docker and debootstrap for the image
# and container tests (.ci/docker.sh, .ci/test-images.sh), a headless Chromium for the UI tests
# (driven by Playwright for Python with executable_path=/usr/bin/chromium; Playwright never
# downloads a browser of its own) and a font so pages render legible text in screenshots.
#
# Idempotent and fast: checks with dpkg first, runs `apt-get update` + install only when a
# package is missing. Needs root (or sudo) only in that case. Set KTX_SKIP_SYSTEM_DEPS=1 to
# skip it entirely (the UI tests then skip themselves when no Chromium is found).
set -euo pipefail

PACKAGES=(chromium fonts-liberation postgresql shellcheck docker.io debootstrap)

[ "${KTX_SKIP_SYSTEM_DEPS:-0}" = "1" ] && exit 0
if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "system-deps: not a Debian/Ubuntu system; install Chromium yourself for the UI tests" >&2
    exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "installed" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
else
    echo "system-deps: missing ${missing[*]} and not root; install them to run the UI tests" >&2
    exit 0
fi

echo "system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
