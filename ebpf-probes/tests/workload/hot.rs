//! Profiler test workload: two known hot functions, built with frame
//! pointers. Runs for the number of seconds given as the first argument.

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
    let secs = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut acc = 0;
    while std::time::Instant::now() < end {
        acc += hot_alpha(acc) ^ hot_beta(acc);
    }
    println!("{acc}");
}
