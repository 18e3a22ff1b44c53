//! The one fact about an ELF file the symbolizer needs before it reads it:
//! whether it has a symbol table (`.symtab`), or was stripped.
//!
//! Read from the section headers with two small reads, not by mapping the
//! file: the point is to decide whether mapping a binary's DWARF is worth
//! it, and for Sightline's own binary it is not (its DWARF is ~700 MiB;
//! loading it for a few unnamed addresses made 200 MiB of the binary
//! resident, counted in the process's RSS and so in the memory budget).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// `SHT_SYMTAB`: the full symbol table, which `strip` removes.
const SHT_SYMTAB: u32 = 2;

/// Whether the ELF file at `path` has a `.symtab` section. Errors when the
/// file cannot be read or is not a little-endian ELF file.
pub fn has_symbol_table(path: &Path) -> io::Result<bool> {
    let file = File::open(path)?;
    let mut ident = [0u8; 64];
    file.read_exact_at(&mut ident, 0)?;
    let layout = Layout::of(&ident)?;
    let mut count = layout.count;
    if count == 0 && layout.offset != 0 {
        // More sections than e_shnum holds: the count is in section 0.
        let mut first = vec![0u8; layout.entry_size];
        file.read_exact_at(&mut first, layout.offset)?;
        count = layout.size_field(&first) as usize;
    }
    let len = count
        .checked_mul(layout.entry_size)
        .filter(|&n| n <= 1 << 24)
        .ok_or_else(|| invalid("implausible section header table"))?;
    let mut headers = vec![0u8; len];
    file.read_exact_at(&mut headers, layout.offset)?;
    Ok(headers
        .chunks_exact(layout.entry_size)
        .any(|h| u32::from_le_bytes([h[4], h[5], h[6], h[7]]) == SHT_SYMTAB))
}

/// Where the section headers are, from the ELF header.
struct Layout {
    offset: u64,
    entry_size: usize,
    count: usize,
    is_64: bool,
}

impl Layout {
    fn of(header: &[u8; 64]) -> io::Result<Layout> {
        if &header[..4] != b"\x7fELF" {
            return Err(invalid("not an ELF file"));
        }
        if header[5] != 1 {
            return Err(invalid("not a little-endian ELF file"));
        }
        let u16_at = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]) as usize;
        let layout = match header[4] {
            1 => Layout {
                offset: u32::from_le_bytes(header[0x20..0x24].try_into().expect("4 bytes")).into(),
                entry_size: u16_at(0x2e),
                count: u16_at(0x30),
                is_64: false,
            },
            2 => Layout {
                offset: u64::from_le_bytes(header[0x28..0x30].try_into().expect("8 bytes")),
                entry_size: u16_at(0x3a),
                count: u16_at(0x3c),
                is_64: true,
            },
            _ => return Err(invalid("unknown ELF class")),
        };
        let minimum = if layout.is_64 { 0x40 } else { 0x28 };
        if layout.count > 0 && layout.entry_size < minimum {
            return Err(invalid("section headers too small"));
        }
        Ok(layout)
    }

    /// `sh_size` of a section header.
    fn size_field(&self, header: &[u8]) -> u64 {
        if self.is_64 {
            u64::from_le_bytes(header[0x20..0x28].try_into().expect("8 bytes"))
        } else {
            u32::from_le_bytes(header[0x14..0x18].try_into().expect("4 bytes")).into()
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_has_a_symbol_table() {
        let me = std::env::current_exe().unwrap();
        assert!(has_symbol_table(&me).unwrap(), "{}", me.display());
    }

    #[test]
    fn a_stripped_copy_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("stripped");
        let status = std::process::Command::new("objcopy")
            .arg("--strip-all")
            .arg(std::env::current_exe().unwrap())
            .arg(&copy)
            .status();
        // objcopy comes with binutils, which the build already needs (cc).
        let status = status.expect("objcopy (binutils)");
        assert!(status.success());
        assert!(!has_symbol_table(&copy).unwrap());
    }

    #[test]
    fn a_file_that_is_not_elf_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("text");
        std::fs::write(&path, [b'x'; 100]).unwrap();
        let err = has_symbol_table(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        std::fs::write(&path, b"\x7fELF").unwrap();
        assert!(has_symbol_table(&path).is_err(), "truncated header");
    }
}
