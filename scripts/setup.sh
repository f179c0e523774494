#!/usr/bin/env bash
# Installs what lra needs to build and test on Debian 12 (idempotent: installs only what is missing).
#   scripts/setup.sh            the build and test dependencies
#   scripts/setup.sh --bench    also Debian's python3-torch, for bench/torch_reference.py and the parity fixtures,
#                               on OpenBLAS (the BLAS torch is compared on) with threadpoolctl (which names its kernel)
set -euo pipefail

# libarchive, zlib and libpng read the official archives, IDX files and Pathfinder PNGs; libcurl and
# OpenSSL's libcrypto download them and check their MD5 (`lra data fetch`); Debian's Fashion-MNIST is
# the image task's built-in data. slurm-wlm and munge: the tests start a one-node Slurm cluster of their
# own (from a temporary folder, on ports of their own; /etc/slurm is never read) to run `lra reproduce
# --slurm` for real. Open MPI (libopenmpi-dev, openmpi-bin) starts and wires the processes of a run over
# several processes (mpirun), and the tests run `mpirun -np 2` for real.
packages=(build-essential cmake libeigen3-dev nlohmann-json3-dev libcli11-dev libfmt-dev catch2
          libarchive-dev zlib1g-dev libpng-dev libcurl4-openssl-dev libssl-dev dataset-fashion-mnist
          slurm-wlm munge libopenmpi-dev openmpi-bin)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(python3 python3-torch libopenblas0-pthread python3-threadpoolctl)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all dependencies present (${packages[*]})"
  exit 0
fi

echo "setup: installing ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "setup: not root and no sudo; as root, run:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" || {
    echo "setup: apt-get could not install ${missing[*]}; install them by hand (Debian 12 package names)" >&2
    exit 1
  }
fi
