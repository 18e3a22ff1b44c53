#!/usr/bin/env bash
# Installs what building the eBPF programs needs, idempotently: the nightly
# toolchain with rust-src (for -Z build-std=core) and bpf-linker built
# against nightly rustc's own LLVM (a prefix whose lib/ links libLLVM.so to
# the toolchain's libLLVM). Prints `--features ebpf` on stdout when the
# toolchain is usable, nothing otherwise: the rest of Sightline builds and
# tests without the probes.
#   scripts/ebpf-toolchain.sh          install if needed, then report
#   scripts/ebpf-toolchain.sh --check  only report
set -uo pipefail

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

ready() {
  rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src' &&
    command -v bpf-linker >/dev/null
}

install() {
  rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal || return 1
  rustup component add rust-src --toolchain nightly >&2 || return 1
  command -v bpf-linker >/dev/null && return 0
  local sysroot llvm major prefix
  sysroot=$(rustc +nightly --print sysroot) || return 1
  llvm=$(ls "$sysroot"/lib/libLLVM.so.*-nightly 2>/dev/null | head -1)
  [[ -n $llvm ]] || { log "nightly has no libLLVM.so to build bpf-linker against"; return 1; }
  major=$(basename "$llvm" | sed -E 's/^libLLVM\.so\.([0-9]+).*/\1/')
  prefix="$HOME/.cache/sightline/llvm-prefix"
  mkdir -p "$prefix/lib"
  ln -sf "$llvm" "$prefix/lib/libLLVM.so"
  ln -sf "$llvm" "$prefix/lib/$(basename "$llvm")"
  log "building bpf-linker against nightly's LLVM $major"
  LLVM_PREFIX="$prefix" cargo install bpf-linker --no-default-features --features "llvm-$major" >&2
}

if [[ ${1:-} != --check ]] && ! ready; then
  log "installing the eBPF toolchain (nightly rust-src, bpf-linker)"
  install || log "eBPF toolchain unavailable: building without the probes (see DEVELOPERS.md)"
fi
if ready; then
  echo "--features ebpf"
fi
