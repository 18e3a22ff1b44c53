//! The CPU profiler on a workload whose hot functions are known (built with
//! frame pointers): at least 80 % of its samples must have a stack through
//! `hot_alpha` or `hot_beta`, named correctly, and the share must match
//! what `perf record -g` (Debian's linux-perf) sees on the same run.
#![cfg(feature = "embed")]

use std::process::{Command, Stdio};
use std::time::Duration;

use ebpf_probes::profile::{Profiler, Sample};

fn build_workload(dir: &std::path::Path) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workload/hot.rs");
    let out = dir.join("hot");
    let ok = Command::new("rustc")
        .args([
            "-O",
            "-g",
            "-C",
            "force-frame-pointers=yes",
            "--crate-name",
            "hot",
        ])
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cannot build the workload");
    out
}

fn hot(frame: &str) -> bool {
    frame.contains("hot::hot_alpha") || frame.contains("hot::hot_beta")
}

#[test]
fn known_hot_functions_dominate_like_in_perf() {
    let dir = tempfile::tempdir().unwrap();
    let bin = build_workload(dir.path());
    let mut workload = Command::new(&bin)
        .arg("8")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = workload.id();
    std::thread::sleep(Duration::from_millis(300));

    let mut ebpf = ebpf_probes::load().expect("probes load (as root)");
    let mut profiler = Profiler::attach(&mut ebpf, 99, Some(pid)).unwrap();
    let data = dir.path().join("perf.data");
    let perf = Command::new("perf")
        .args(["record", "-F", "99", "-g", "-p", &pid.to_string(), "-o"])
        .arg(&data)
        .args(["--", "sleep", "5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("perf is installed by scripts/setup.sh");
    assert!(perf.success());
    let (samples, stats) = profiler.drain();
    workload.wait().unwrap();

    let total: u64 = samples.iter().map(|s| s.count).sum();
    let in_hot: u64 = samples
        .iter()
        .filter(|s| s.frames.iter().any(|f| hot(f)))
        .map(|s| s.count)
        .sum();
    assert!(total >= 200, "too few samples: {total}");
    assert!(samples.iter().all(|s| s.tgid == pid && s.comm == "hot"));
    assert_eq!(stats.without_frame_pointers, 0);
    let ours = in_hot as f64 / total as f64;
    // Root to leaf: main comes before the hot function. Not in every
    // sample: one taken in a function's prologue, before it has pushed its
    // frame pointer, unwinds past its caller (perf's frame-pointer stacks
    // do the same), so a single sample can lack `main` — CI once picked
    // such a sample. Nearly all must have it.
    let rooted = |s: &Sample| {
        let main = s.frames.iter().position(|f| f == "hot::main");
        let leaf = s.frames.iter().position(|f| hot(f));
        matches!((main, leaf), (Some(m), Some(l)) if m < l)
    };
    let hot_samples: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.frames.iter().any(|f| hot(f)))
        .collect();
    let in_order: u64 = hot_samples
        .iter()
        .filter(|s| rooted(s))
        .map(|s| s.count)
        .sum();
    assert!(
        in_order as f64 >= 0.9 * in_hot as f64,
        "{in_order} of {in_hot} hot samples have main before the hot function; e.g. {:?}",
        hot_samples.iter().find(|s| !rooted(s)).map(|s| &s.frames)
    );

    let script = Command::new("perf")
        .args(["script", "-i"])
        .arg(&data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&script.stdout);
    let stacks: Vec<&str> = text
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .collect();
    let perf_hot = stacks
        .iter()
        .filter(|b| b.contains("hot::hot_alpha") || b.contains("hot::hot_beta"))
        .count();
    let theirs = perf_hot as f64 / stacks.len() as f64;
    eprintln!(
        "ours: {in_hot}/{total} = {ours:.3}; perf: {perf_hot}/{} = {theirs:.3}",
        stacks.len()
    );
    assert!(
        ours >= 0.8,
        "only {ours:.2} of samples in the hot functions: {samples:?}"
    );
    assert!(
        (ours - theirs).abs() <= 0.05,
        "ours {ours:.3}, perf {theirs:.3}"
    );
}
