//! Profiler test workload: two known hot functions, built with frame
//! pointers. `hot <seconds>` runs for that long; `hot --rounds <n>` does a
//! fixed amount of work (the probe overhead benchmark times it).

#[inline(never)]
fn hot_alpha(n: u64) -> u64 {
    let mut x = n;
    for i in 0..20_000_000u64 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
    }
    x
}

#[inline(never)]
fn hot_beta(n: u64) -> u64 {
    let mut x = n;
    for i in 0..10_000_000u64 {
        x ^= x.rotate_left(7).wrapping_add(i);
    }
    x
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("--rounds") {
        let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(100);
        let mut acc = 0;
        for _ in 0..n {
            acc += hot_alpha(acc) ^ hot_beta(acc);
        }
        println!("{acc}");
        return;
    }
    let secs = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut acc = 0;
    while std::time::Instant::now() < end {
        acc += hot_alpha(acc) ^ hot_beta(acc);
    }
    println!("{acc}");
}
