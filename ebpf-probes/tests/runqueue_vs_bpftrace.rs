//! The run-queue probe against an independent measurement: a runqlat-style
//! `bpftrace` script (Debian's bpftrace) over the same window, under CPU
//! contention this test generates. Sample counts must agree within 10 %
//! and the medians within one log2 bucket.
#![cfg(feature = "embed")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ebpf_probes::{Probes, ProbesConfig};

const SCRIPT: &str = r#"
tracepoint:sched:sched_wakeup, tracepoint:sched:sched_wakeup_new {
    if (args->pid != 0) { @qtime[args->pid] = nsecs; }
}
tracepoint:sched:sched_switch {
    if (args->prev_state == 0 && args->prev_pid != 0) { @qtime[args->prev_pid] = nsecs; }
    $ns = @qtime[args->next_pid];
    if ($ns) { @usecs = hist((nsecs - $ns) / 1000); }
    delete(@qtime[args->next_pid]);
}
END { clear(@qtime); }
"#;

/// Four threads on a two-core machine, each spinning 200 µs then sleeping
/// 300 µs: plenty of wakeups that wait for a CPU.
fn contention(stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    while t.elapsed() < Duration::from_micros(200) {
                        std::hint::spin_loop();
                    }
                    std::thread::sleep(Duration::from_micros(300));
                }
            })
        })
        .collect()
}

/// Parses bpftrace's `hist()` output into counts per log2 slot (ours:
/// slot s holds [2^s, 2^(s+1)) µs, with 0 and 1 µs in slot 0).
fn parse_hist(out: &str) -> Vec<u64> {
    let mut slots = vec![0u64; 32];
    for line in out.lines() {
        let Some(rest) = line.trim().strip_prefix('[') else {
            continue;
        };
        let Some((range, tail)) = rest.split_once(']').or_else(|| rest.split_once(')')) else {
            continue;
        };
        let lower = range.split(',').next().unwrap_or("").trim();
        let value = |s: &str| -> Option<u64> {
            let (num, mult) = match s.chars().last()? {
                'K' => (&s[..s.len() - 1], 1u64 << 10),
                'M' => (&s[..s.len() - 1], 1 << 20),
                'G' => (&s[..s.len() - 1], 1 << 30),
                _ => (s, 1),
            };
            num.parse::<u64>().ok().map(|n| n * mult)
        };
        let (Some(lo), Some(count)) = (
            value(lower),
            tail.split_whitespace()
                .next()
                .and_then(|c| c.parse::<u64>().ok()),
        ) else {
            continue;
        };
        let slot = if lo <= 1 { 0 } else { 63 - lo.leading_zeros() } as usize;
        slots[slot.min(31)] += count;
    }
    slots
}

fn median_slot(slots: &[u64]) -> usize {
    let total: u64 = slots.iter().sum();
    let mut seen = 0;
    for (i, n) in slots.iter().enumerate() {
        seen += n;
        if seen * 2 >= total {
            return i;
        }
    }
    slots.len() - 1
}

#[test]
fn run_queue_latency_matches_a_bpftrace_runqlat() {
    let metrics = collector::self_metrics::SelfMetrics::new();
    let stop = Arc::new(AtomicBool::new(false));
    let load = contention(stop.clone());
    // Ours first, then bpftrace; each count is divided by its own window.
    let mut probes =
        Probes::start(&ProbesConfig::default(), &metrics).expect("probes load (as root)");
    assert!(probes.running().contains(&ebpf_probes::Probe::RunQueue));
    let mut bt = Command::new("bpftrace")
        .args(["-e", SCRIPT])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("bpftrace is installed by scripts/setup.sh");
    let mut lines = BufReader::new(bt.stdout.take().unwrap()).lines();
    let attached = lines.next().expect("bpftrace output").unwrap();
    let bt_start = Instant::now();
    assert!(attached.starts_with("Attaching"), "{attached}");
    probes.collect();
    let our_start = Instant::now();
    let before = probes.totals.runqueue.merged();
    std::thread::sleep(Duration::from_secs(8));
    probes.collect();
    let our_window = our_start.elapsed().as_secs_f64();
    // bpftrace prints its histogram on SIGINT.
    Command::new("kill")
        .args(["-INT", &bt.id().to_string()])
        .status()
        .unwrap();
    let bt_window = bt_start.elapsed().as_secs_f64();
    let ours: Vec<u64> = probes
        .totals
        .runqueue
        .merged()
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    let text: String = lines.map_while(Result::ok).collect::<Vec<_>>().join("\n");
    bt.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    load.into_iter().for_each(|t| t.join().unwrap());

    let theirs = parse_hist(&text);
    let (n_ours, n_theirs) = (
        ours.iter().sum::<u64>() as f64,
        theirs.iter().sum::<u64>() as f64,
    );
    assert!(n_theirs > 1000.0, "too few samples to compare: {text}");
    let (r_ours, r_theirs) = (n_ours / our_window, n_theirs / bt_window);
    eprintln!(
        "ours {n_ours} in {our_window:.2} s ({r_ours:.0}/s), bpftrace {n_theirs} in {bt_window:.2} s ({r_theirs:.0}/s); median slots {} / {}",
        median_slot(&ours),
        median_slot(&theirs)
    );
    let diff = (r_ours - r_theirs).abs() / r_theirs;
    assert!(
        diff <= 0.10,
        "sample rates differ by {:.1} %\nours {ours:?}\nbpftrace {theirs:?}",
        diff * 100.0
    );
    let (m_ours, m_theirs) = (median_slot(&ours), median_slot(&theirs));
    assert!(
        m_ours.abs_diff(m_theirs) <= 1,
        "medians: ours slot {m_ours}, bpftrace slot {m_theirs}\nours {ours:?}\nbpftrace {theirs:?}"
    );
    assert_eq!(metrics.probe_up.with_label_values(&["runqueue"]).get(), 1);
}

#[test]
fn bpftrace_histograms_parse_into_log2_slots() {
    let out = "@usecs:\n[0]    3 |@|\n[1]    2 |@|\n[2, 4)   5 |@|\n[1K, 2K)   7 |@|\n";
    let s = parse_hist(out);
    assert_eq!((s[0], s[1], s[10]), (5, 5, 7));
}
