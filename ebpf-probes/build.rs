//! With the `embed` feature, builds the kernel-side programs
//! (`programs/`, target `bpfel-unknown-none`, nightly, `-Z build-std=core`)
//! into `OUT_DIR/sightline-probes.o` for `include_bytes!`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    for p in ["programs/src", "programs/Cargo.toml", "common/src"] {
        println!("cargo:rerun-if-changed={}", manifest.join(p).display());
    }
    if std::env::var_os("CARGO_FEATURE_EMBED").is_none() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let object = build_programs(&manifest.join("programs"), &out.join("ebpf-target"));
    std::fs::copy(&object, out.join("sightline-probes.o")).expect("copy the eBPF object");
}

fn build_programs(dir: &Path, target_dir: &Path) -> PathBuf {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "build", "--release"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(dir);
    // The outer build's settings are for the host target.
    for var in [
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect(
        "cannot run `rustup run nightly cargo`: the `embed` feature needs the nightly toolchain (scripts/setup.sh installs it)",
    );
    assert!(
        status.success(),
        "building the eBPF programs failed (needs nightly with rust-src and bpf-linker; scripts/setup.sh installs them)"
    );
    target_dir.join("bpfel-unknown-none/release/sightline-probes")
}
