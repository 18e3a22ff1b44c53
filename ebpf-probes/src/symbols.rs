//! Names for stack addresses, with blazesym.
//!
//! User addresses are first normalized to (binary, file offset); names are
//! cached per binary *build id* and offset, so every process running the
//! same executable or library (a fleet of workers, a restarted service)
//! reuses the names found once, and a rebuilt binary at the same path is
//! never given stale ones. Kernel addresses are cached by address: they do
//! not move while the machine is up.
//!
//! Names come from ELF symbol tables and `/proc/kallsyms` first, DWARF only
//! for stripped binaries (no `.symtab`, checked once per binary by
//! [`crate::elf::has_symbol_table`]; their debug links are followed): a
//! flame graph shows functions, not lines, and reading DWARF of a large
//! binary costs hundreds of MiB (measured: 200 MiB of Sightline's own
//! binary made resident to name a few addresses its symbol table did not
//! cover, which put the process over its memory budget). Inlined functions
//! show as their caller, as in `perf report` without `--inline`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use blazesym::Pid;
use blazesym::normalize::{NormalizeOpts, Normalizer, UserMeta};
use blazesym::symbolize::source::{Elf, Kernel, Source};
use blazesym::symbolize::{Input, Symbolized, Symbolizer};

/// Entries kept before the caches start over, bounding their memory
/// (about 100 bytes each).
const MAX_ENTRIES: usize = 500_000;

/// Files the symbolizer may hold open before it starts over: it keeps every
/// file it has read, parsed, so a busy machine would otherwise grow it
/// without bound. Our own name cache survives the reset.
///
/// Each process's binary is a different `/proc/<pid>/map_files` path, so
/// binaries are opened by build id, through the first process seen running
/// each (`Binaries::path_for`): counted by path, six processes' binaries and
/// libraries filled this, and every reset made the next miss parse
/// Sightline's own 900 MB binary again — 5 % of the server's CPU under load.
const MAX_OPEN_BINARIES: usize = 64;

/// Cache hit and miss counts, for tests and self-metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Addresses named from the cache.
    pub hits: u64,
    /// Addresses that needed the symbolizer.
    pub misses: u64,
}

/// Address → name, cached.
pub struct Symbols {
    normalizer: Normalizer,
    binaries: Binaries,
    /// (build id, or the path when the binary has none; file offset) → name.
    user: HashMap<(Arc<[u8]>, u64), Arc<str>>,
    kernel: HashMap<u64, Arc<str>>,
    /// Binary (build id, or path) → whether it was stripped of `.symtab`.
    stripped: HashMap<Arc<[u8]>, bool>,
    /// Counts since start.
    pub stats: CacheStats,
}

/// The symbolizer and the files it has open.
struct Binaries {
    symbolizer: Symbolizer,
    /// Binary (build id, or path) → the path `symbolizer` reads it by.
    paths: HashMap<Arc<[u8]>, PathBuf>,
    /// Paths given to `symbolizer` since it was made.
    opened: HashSet<PathBuf>,
}

impl Binaries {
    fn new() -> Binaries {
        Binaries {
            symbolizer: symbolizer(),
            paths: HashMap::new(),
            opened: HashSet::new(),
        }
    }

    /// The path to read binary `key` by: the one it was read by before,
    /// while that process lives (the symbolizer has it parsed), else `seen`.
    fn path_for(&mut self, key: &Arc<[u8]>, seen: &std::path::Path) -> PathBuf {
        if let Some(p) = self.paths.get(key)
            && self.opened.contains(p)
            && p.exists()
        {
            return p.clone();
        }
        if self.opened.len() >= MAX_OPEN_BINARIES {
            *self = Binaries::new();
        }
        self.opened.insert(seen.to_path_buf());
        self.paths.insert(key.clone(), seen.to_path_buf());
        seen.to_path_buf()
    }
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols {
            normalizer: Normalizer::builder()
                .enable_build_ids(true)
                .enable_build_id_caching(true)
                .build(),
            binaries: Binaries::new(),
            user: HashMap::new(),
            kernel: HashMap::new(),
            stripped: HashMap::new(),
            stats: CacheStats::default(),
        }
    }
}

fn symbolizer() -> Symbolizer {
    Symbolizer::builder()
        .enable_code_info(false)
        .enable_inlined_fns(false)
        .build()
}

fn hex(ip: u64, suffix: &str) -> String {
    format!("{ip:#x}{suffix}")
}

impl Symbols {
    /// Names of the user-space addresses `ips` of process `pid`.
    pub fn user(&mut self, pid: u32, ips: &[u64]) -> Vec<String> {
        let opts = NormalizeOpts {
            // Paths under /proc/<pid>/map_files reach binaries inside
            // containers and binaries deleted since they started.
            map_files: true,
            ..Default::default()
        };
        let Ok(out) = self
            .normalizer
            .normalize_user_addrs_opts(Pid::from(pid), ips, &opts)
        else {
            return ips.iter().map(|ip| hex(*ip, "")).collect();
        };
        let mut names: Vec<Option<Arc<str>>> = vec![None; ips.len()];
        // Per binary (meta index): the positions and offsets still unnamed.
        let mut missing: HashMap<usize, Vec<(usize, u64)>> = HashMap::new();
        for (pos, (offset, meta)) in out.outputs.iter().enumerate() {
            if let Some(UserMeta::Elf(elf)) = out.meta.get(*meta) {
                let key = (binary_key(elf), *offset);
                match self.user.get(&key) {
                    Some(name) => {
                        self.stats.hits += 1;
                        names[pos] = Some(name.clone());
                    }
                    None => missing.entry(*meta).or_default().push((pos, *offset)),
                }
            }
        }
        for (meta, wanted) in missing {
            let Some(UserMeta::Elf(elf)) = out.meta.get(meta) else {
                continue;
            };
            let key = binary_key(elf);
            let offsets: Vec<u64> = wanted.iter().map(|(_, o)| *o).collect();
            let path = self.binaries.path_for(&key, &elf.path);
            let mut source = Elf::new(&path);
            source.debug_syms = false;
            let mut found = self.lookup(&Source::Elf(source), Input::FileOffset(&offsets));
            if found.iter().any(Option::is_none) && is_stripped(&mut self.stripped, &key, &path) {
                // A stripped binary: its dynamic symbols name only exported
                // functions. DWARF, from the binary or its debug link (e.g. a
                // Debian -dbgsym package). Never for a binary with a symbol
                // table, whose unnamed addresses are PLT stubs or assembly:
                // that would load its whole DWARF for nothing.
                let unnamed: Vec<u64> = offsets
                    .iter()
                    .zip(&found)
                    .filter(|(_, n)| n.is_none())
                    .map(|(o, _)| *o)
                    .collect();
                let mut dwarf = Elf::new(&path);
                dwarf.debug_syms = true;
                let mut named = self
                    .lookup(&Source::Elf(dwarf), Input::FileOffset(&unnamed))
                    .into_iter();
                for n in found.iter_mut().filter(|n| n.is_none()) {
                    *n = named.next().flatten();
                }
            }
            self.stats.misses += offsets.len() as u64;
            if self.user.len() > MAX_ENTRIES {
                self.user.clear();
            }
            for ((pos, offset), name) in wanted.into_iter().zip(found) {
                let name: Arc<str> = name
                    .unwrap_or_else(|| format!("{}+{offset:#x}", file_name(&elf.path)))
                    .into();
                self.user.insert((key.clone(), offset), name.clone());
                names[pos] = Some(name);
            }
        }
        names
            .into_iter()
            .zip(ips)
            .map(|(n, ip)| n.map_or_else(|| hex(*ip, ""), |n| n.to_string()))
            .collect()
    }

    /// Names of kernel addresses, suffixed `_[k]`.
    pub fn kernel(&mut self, ips: &[u64]) -> Vec<String> {
        let missing: Vec<u64> = ips
            .iter()
            .copied()
            .filter(|ip| !self.kernel.contains_key(ip))
            .collect();
        self.stats.hits += (ips.len() - missing.len()) as u64;
        if !missing.is_empty() {
            self.stats.misses += missing.len() as u64;
            let source = Kernel {
                debug_syms: false,
                ..Kernel::default()
            };
            let found = self.lookup(&Source::Kernel(source), Input::AbsAddr(&missing));
            if self.kernel.len() > MAX_ENTRIES {
                self.kernel.clear();
            }
            for (ip, name) in missing.into_iter().zip(found) {
                let name = name.map_or_else(|| hex(ip, "_[k]"), |n| format!("{n}_[k]"));
                self.kernel.insert(ip, name.into());
            }
        }
        ips.iter()
            .map(|ip| {
                self.kernel
                    .get(ip)
                    .map_or_else(|| hex(*ip, "_[k]"), |n| n.to_string())
            })
            .collect()
    }

    /// One name per input, `None` where the symbolizer knows none.
    fn lookup(&self, src: &Source, input: Input<&[u64]>) -> Vec<Option<String>> {
        let n = input.as_inner_ref().len();
        match self.binaries.symbolizer.symbolize(src, input) {
            Ok(syms) => syms
                .iter()
                .map(|s| match s {
                    Symbolized::Sym(sym) => Some(sym.name.to_string()),
                    Symbolized::Unknown(_) => None,
                })
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "symbolization failed");
                vec![None; n]
            }
        }
    }
}

/// Whether binary `key`, readable at `path`, has no `.symtab`, remembered in
/// `known` (an unreadable one counts as having one: DWARF is never read on a
/// guess).
fn is_stripped(
    known: &mut HashMap<Arc<[u8]>, bool>,
    key: &Arc<[u8]>,
    path: &std::path::Path,
) -> bool {
    if known.len() > MAX_OPEN_BINARIES * 16 {
        known.clear();
    }
    *known
        .entry(key.clone())
        .or_insert_with(|| !crate::elf::has_symbol_table(path).unwrap_or(true))
}

fn binary_key(elf: &blazesym::normalize::Elf<'_>) -> Arc<[u8]> {
    match &elf.build_id {
        Some(id) if !id.is_empty() => Arc::from(id.as_ref()),
        _ => Arc::from(elf.path.as_os_str().as_encoded_bytes()),
    }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map_or_else(|| "?".into(), |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn where_am_i() -> u64 {
        where_am_i as *const () as u64
    }

    #[test]
    fn own_function_named_once_then_from_the_cache() {
        let mut s = Symbols::default();
        let ip = where_am_i();
        let pid = std::process::id();
        let first = s.user(pid, &[ip]);
        assert!(first[0].contains("where_am_i"), "{first:?}");
        assert_eq!(s.stats, CacheStats { hits: 0, misses: 1 });
        let again = s.user(pid, &[ip]);
        assert_eq!(again, first);
        assert_eq!(s.stats, CacheStats { hits: 1, misses: 1 });
    }

    /// Start address of the first executable mapping of `/proc/<pid>/maps`
    /// whose path ends with `name`, waiting for a new child's `exec`.
    fn text_mapping(pid: u32, name: &str) -> u64 {
        for _ in 0..200 {
            let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
            let text = maps
                .lines()
                .find(|l| l.split_whitespace().nth(1) == Some("r-xp") && l.ends_with(name));
            if let Some(line) = text {
                let start = line.split('-').next().unwrap();
                return u64::from_str_radix(start, 16).unwrap();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("no text mapping of {name} in process {pid}")
    }

    #[test]
    fn processes_running_one_binary_share_one_open_file() {
        let mut children: Vec<_> = (0..3)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut s = Symbols::default();
        for (i, child) in children.iter().enumerate() {
            let start = text_mapping(child.id(), "/sleep");
            // A different address in each, so each one misses the name cache.
            let names = s.user(child.id(), &[start + 0x40 * (i as u64 + 1)]);
            assert!(!names[0].starts_with("0x"), "{names:?}");
        }
        assert_eq!(s.stats.misses, 3);
        assert_eq!(s.binaries.opened.len(), 1, "{:?}", s.binaries.opened);
        // Once the process it was read by exits, the next one's path is used.
        let first = children.remove(0);
        let first_id = first.id();
        kill(first);
        let start = text_mapping(children[0].id(), "/sleep");
        s.user(children[0].id(), &[start + 0x400]);
        assert_eq!(s.binaries.opened.len(), 2);
        assert!(
            s.binaries.opened.iter().all(|p| p.starts_with("/proc")),
            "{:?}",
            s.binaries.opened
        );
        assert!(
            !s.binaries
                .paths
                .values()
                .any(|p| p.starts_with(format!("/proc/{first_id}/")))
        );
        children.into_iter().for_each(kill);
    }

    fn kill(mut child: std::process::Child) {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
