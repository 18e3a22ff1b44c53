//! The one fact about an ELF file the symbolizer needs before it reads it:
//! whether it has a symbol table (`.symtab`), or was stripped.
//!
//! Read from the ELF and section headers alone (with `object`), not by
//! mapping the file: the point is to decide whether mapping a binary's DWARF
//! is worth it, and for Sightline's own binary it is not (its DWARF is ~700
//! MiB; loading it for a few unnamed addresses made 200 MiB of the binary
//! resident, counted in the process's RSS and so in the memory budget).

use std::fs::File;
use std::io;
use std::path::Path;

use object::read::elf::{FileHeader, SectionHeader};
use object::{FileKind, ReadCache, ReadRef, elf};

/// Whether the ELF file at `path` has a `.symtab` section. Errors when the
/// file cannot be read or is not an ELF file.
pub fn has_symbol_table(path: &Path) -> io::Result<bool> {
    // `ReadCache` reads only the ranges asked for: the ELF header and the
    // section headers, not the sections themselves.
    let cache = ReadCache::new(File::open(path)?);
    match FileKind::parse(&cache).map_err(invalid)? {
        FileKind::Elf64 => any_symtab::<elf::FileHeader64<object::Endianness>>(&cache),
        FileKind::Elf32 => any_symtab::<elf::FileHeader32<object::Endianness>>(&cache),
        _ => Err(invalid("not an ELF file")),
    }
}

fn any_symtab<'data, H: FileHeader<Endian = object::Endianness>>(
    data: impl ReadRef<'data>,
) -> io::Result<bool> {
    let header = H::parse(data).map_err(invalid)?;
    let endian = header.endian().map_err(invalid)?;
    let sections = header.section_headers(endian, data).map_err(invalid)?;
    Ok(sections
        .iter()
        .any(|s| s.sh_type(endian) == elf::SHT_SYMTAB))
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
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
