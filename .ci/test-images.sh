#!/usr/bin/env bash
# The images the container tests run, built as users build theirs, each step cached:
#   ktx-base:bookworm   Debian bookworm with Debian's Python 3.11, from Debian's packages
#                       (debootstrap + docker import: no image registry is reachable here)
#   ktx-dagster:test    deploy/Dockerfile on that base, offline, from a wheelhouse built here
#                       (the library, the examples' code locations, every dependency)
#
#   .ci/test-images.sh PYTHON     # PYTHON: the virtualenv's python that builds the wheels
# Needs a running daemon (.ci/docker.sh start) and DOCKER_HOST pointing at it.
set -euo pipefail

PYTHON="${1:?usage: $0 PYTHON}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKER="${KTX_DOCKER:-/usr/bin/docker}"
BASE="${KTX_BASE_IMAGE:-ktx-base:bookworm}"
IMAGE="${KTX_TEST_IMAGE_TAG:-ktx-dagster:test}"
CACHE="${KTX_IMAGE_CACHE:-${REPO}/.cache/images}"
MIRROR="${KTX_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
mkdir -p "${CACHE}/debs"

if ! "${DOCKER}" image inspect "${BASE}" >/dev/null 2>&1; then
  echo "test-images: ${BASE} from Debian's packages (debootstrap, once)"
  rootfs="$(mktemp -d "${CACHE}/rootfs.XXXX")"
  # python3-venv brings python3, ensurepip and the CA certificates; minbase has passwd
  debootstrap --variant=minbase --cache-dir="${CACHE}/debs" --include=python3-venv bookworm "${rootfs}" "${MIRROR}" \
    >"${CACHE}/debootstrap.log" 2>&1 || { tail -20 "${CACHE}/debootstrap.log"; exit 1; }
  rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/cache/apt/*.bin "${rootfs}"/var/lib/apt/lists/*
  tar -C "${rootfs}" -c . | "${DOCKER}" import -c 'CMD ["python3"]' - "${BASE}" >/dev/null
  rm -rf "${rootfs}"
fi

# A clean copy of the working tree (git's tracked and new files): no stale build/ leaks in.
src="${CACHE}/src"
rm -rf "${src}"
mkdir -p "${src}"
(cd "${REPO}" && git ls-files -z -co --exclude-standard \
  | tar --null --ignore-failed-read -T - -c 2>/dev/null | tar -C "${src}" -x)

# The wheelhouse: dependencies at the tested versions plus the build backend's own
# requirements, built outside (the image build then needs no network).
wheelhouse="${CACHE}/wheelhouse"
"${PYTHON}" -m pip wheel -q --disable-pip-version-check -c "${REPO}/.ci/constraints.txt" -w "${wheelhouse}" \
  "${src}" "${src}/deploy/examples" 'setuptools>=68' wheel >"${CACHE}/wheelhouse.log" 2>&1 \
  || { grep -v "is neither a file nor a directory" "${CACHE}/wheelhouse.log" | tail -30; exit 1; }
rm -rf "${src}/build" "${src}"/*.egg-info "${src}/deploy/examples/build"
mkdir -p "${src}/dist"
cp -al "${wheelhouse}" "${src}/dist/wheelhouse"
rm -f "${src}"/dist/wheelhouse/ktx_dagster*.whl  # the image builds these from the sources itself

echo "test-images: ${IMAGE} (deploy/Dockerfile on ${BASE}, offline)"
DOCKER_BUILDKIT=1 "${DOCKER}" build --quiet --network host -f "${src}/deploy/Dockerfile" \
  --build-arg BASE_IMAGE="${BASE}" --build-arg PIP_ARGS="--no-index --find-links dist/wheelhouse" \
  -t "${IMAGE}" "${src}" >"${CACHE}/build.log" 2>&1 || { tail -40 "${CACHE}/build.log"; exit 1; }
