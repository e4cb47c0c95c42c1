//! ELF headers, as far as manifold needs them: the identification bytes and machine of a file
//! (`verify`, binfmt magic), and whether an executable asks for a dynamic loader (a binfmt
//! emulator registered with the F flag must not).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// `e_ident[EI_CLASS]`.
pub const CLASS_32: u8 = 1;
pub const CLASS_64: u8 = 2;
/// `e_ident[EI_DATA]`.
pub const DATA_LSB: u8 = 1;
pub const DATA_MSB: u8 = 2;

const PT_INTERP: u32 = 3;

/// Enough bytes of a file to read its ELF header (64-bit headers are 64 bytes long).
pub const HEADER_LEN: usize = 64;

/// The parts of an ELF header that say which machine a file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub class: u8,
    pub data: u8,
    pub file_type: u16,
    pub machine: u16,
    phoff: u64,
    phentsize: u16,
    phnum: u16,
}

impl Header {
    /// Parse the start of a file; None when it is not an ELF file (or too short to tell).
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < 52 || &bytes[..4] != b"\x7fELF" {
            return None;
        }
        let class = bytes[4];
        let data = bytes[5];
        let u16_at = |o: usize| -> Option<u16> {
            let b: [u8; 2] = bytes.get(o..o + 2)?.try_into().ok()?;
            Some(match data {
                DATA_LSB => u16::from_le_bytes(b),
                DATA_MSB => u16::from_be_bytes(b),
                _ => return None,
            })
        };
        let u32_at = |o: usize| -> Option<u32> {
            let b: [u8; 4] = bytes.get(o..o + 4)?.try_into().ok()?;
            Some(match data {
                DATA_LSB => u32::from_le_bytes(b),
                _ => u32::from_be_bytes(b),
            })
        };
        let u64_at = |o: usize| -> Option<u64> {
            let b: [u8; 8] = bytes.get(o..o + 8)?.try_into().ok()?;
            Some(match data {
                DATA_LSB => u64::from_le_bytes(b),
                _ => u64::from_be_bytes(b),
            })
        };
        let (phoff, phentsize, phnum) = match class {
            CLASS_32 => (u32_at(28)? as u64, u16_at(42)?, u16_at(44)?),
            CLASS_64 => (u64_at(32)?, u16_at(54)?, u16_at(56)?),
            _ => return None,
        };
        Some(Header {
            class,
            data,
            file_type: u16_at(16)?,
            machine: u16_at(18)?,
            phoff,
            phentsize,
            phnum,
        })
    }

    /// `ELF64 LSB x86-64`, as `file(1)` would put it.
    pub fn describe(&self) -> String {
        describe(self.class, self.data, self.machine)
    }
}

/// `ELF32 MSB s390`, for class, byte order and machine.
pub fn describe(class: u8, data: u8, machine: u16) -> String {
    let class = match class {
        CLASS_32 => "ELF32",
        CLASS_64 => "ELF64",
        _ => "ELF?",
    };
    let data = match data {
        DATA_LSB => "LSB",
        DATA_MSB => "MSB",
        _ => "?SB",
    };
    format!("{class} {data} {}", machine_name(machine))
}

/// The name of an `e_machine` value, for messages.
pub fn machine_name(machine: u16) -> String {
    match machine {
        2 => "SPARC".into(),
        3 => "i386".into(),
        4 => "m68k".into(),
        8 => "MIPS".into(),
        15 => "PA-RISC".into(),
        20 => "PowerPC".into(),
        21 => "PowerPC64".into(),
        22 => "s390".into(),
        40 => "ARM".into(),
        42 => "SuperH".into(),
        43 => "SPARC V9".into(),
        62 => "x86-64".into(),
        183 => "AArch64".into(),
        243 => "RISC-V".into(),
        258 => "LoongArch".into(),
        other => format!("machine {other}"),
    }
}

/// The program interpreter (dynamic loader) an ELF executable names in PT_INTERP, if any.
/// Ok(None) for a static executable (static-pie included) and for files that are not ELF.
pub fn interpreter(file: &mut File) -> io::Result<Option<String>> {
    let mut head = [0u8; HEADER_LEN];
    file.seek(SeekFrom::Start(0))?;
    let n = read_up_to(file, &mut head)?;
    let Some(h) = Header::parse(&head[..n]) else {
        return Ok(None);
    };
    let entsize = h.phentsize as usize;
    let min_entsize = if h.class == CLASS_64 { 56 } else { 32 };
    if entsize < min_entsize || h.phnum == 0 {
        return Ok(None);
    }
    let mut table = vec![0u8; entsize * h.phnum as usize];
    file.seek(SeekFrom::Start(h.phoff))?;
    file.read_exact(&mut table)?;
    let field32 = |b: &[u8]| -> u32 {
        let b: [u8; 4] = b.try_into().expect("4 bytes");
        if h.data == DATA_LSB {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let field64 = |b: &[u8]| -> u64 {
        let b: [u8; 8] = b.try_into().expect("8 bytes");
        if h.data == DATA_LSB {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        }
    };
    for entry in table.chunks(entsize) {
        if field32(&entry[..4]) != PT_INTERP {
            continue;
        }
        let (offset, size) = if h.class == CLASS_64 {
            (field64(&entry[8..16]), field64(&entry[32..40]))
        } else {
            (field32(&entry[4..8]) as u64, field32(&entry[16..20]) as u64)
        };
        let mut path = vec![0u8; size.min(4096) as usize];
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(&mut path)?;
        let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
        return Ok(Some(String::from_utf8_lossy(&path[..end]).into_owned()));
    }
    Ok(None)
}

/// Read until `buf` is full or the input ends; returns how many bytes were read.
pub fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A minimal ELF file: header, one program header (PT_INTERP when `interp` is given) and
    /// the interpreter string.
    pub(crate) fn synthetic(class: u8, data: u8, machine: u16, interp: Option<&str>) -> Vec<u8> {
        let le = data == DATA_LSB;
        let p16 = |v: u16| if le { v.to_le_bytes() } else { v.to_be_bytes() };
        let p32 = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
        let p64 = |v: u64| if le { v.to_le_bytes() } else { v.to_be_bytes() };
        let mut out = vec![0u8; 16];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = class;
        out[5] = data;
        out[6] = 1;
        out.extend(p16(2)); // ET_EXEC
        out.extend(p16(machine));
        out.extend(p32(1));
        let (ehsize, phentsize) = if class == CLASS_64 {
            (64, 56)
        } else {
            (52, 32)
        };
        let interp_bytes = interp.map(|s| format!("{s}\0").into_bytes());
        let ptype = if interp.is_some() { PT_INTERP } else { 1 };
        let str_off = (ehsize + phentsize) as u64;
        let str_len = interp_bytes.as_ref().map_or(0, |b| b.len() as u64);
        if class == CLASS_64 {
            out.extend(p64(0)); // entry
            out.extend(p64(ehsize as u64)); // phoff
            out.extend(p64(0)); // shoff
            out.extend(p32(0)); // flags
            out.extend(p16(ehsize));
            out.extend(p16(phentsize));
            out.extend(p16(1));
            out.extend([0u8; 6]);
            out.extend(p32(ptype));
            out.extend(p32(4));
            out.extend(p64(str_off));
            out.extend(p64(0));
            out.extend(p64(0));
            out.extend(p64(str_len));
            out.extend(p64(str_len));
            out.extend(p64(1));
        } else {
            out.extend(p32(0));
            out.extend(p32(ehsize as u32));
            out.extend(p32(0));
            out.extend(p32(0));
            out.extend(p16(ehsize));
            out.extend(p16(phentsize));
            out.extend(p16(1));
            out.extend([0u8; 6]);
            out.extend(p32(ptype));
            out.extend(p32(str_off as u32));
            out.extend(p32(0));
            out.extend(p32(0));
            out.extend(p32(str_len as u32));
            out.extend(p32(str_len as u32));
            out.extend(p32(4));
            out.extend(p32(1));
        }
        assert_eq!(out.len() as u64, str_off);
        if let Some(b) = interp_bytes {
            out.extend(b);
        }
        out
    }

    #[test]
    fn parses_both_classes_and_byte_orders() {
        let cases = [
            (CLASS_64, DATA_LSB, 62, "ELF64 LSB x86-64"),
            (CLASS_64, DATA_LSB, 183, "ELF64 LSB AArch64"),
            (CLASS_32, DATA_LSB, 40, "ELF32 LSB ARM"),
            (CLASS_64, DATA_MSB, 22, "ELF64 MSB s390"),
            (CLASS_32, DATA_MSB, 8, "ELF32 MSB MIPS"),
        ];
        for (class, data, machine, text) in cases {
            let h = Header::parse(&synthetic(class, data, machine, None)).unwrap();
            assert_eq!((h.class, h.data, h.machine), (class, data, machine));
            assert_eq!(h.file_type, 2);
            assert_eq!(h.describe(), text);
        }
        assert_eq!(Header::parse(b"#!/bin/sh\n"), None);
        assert_eq!(Header::parse(b"\x7fELF"), None);
    }

    #[test]
    fn finds_the_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        for class in [CLASS_32, CLASS_64] {
            for data in [DATA_LSB, DATA_MSB] {
                let path = dir.path().join(format!("dyn-{class}-{data}"));
                let mut f = File::create(&path).unwrap();
                f.write_all(&synthetic(class, data, 62, Some("/lib/ld.so.1")))
                    .unwrap();
                let mut f = File::open(&path).unwrap();
                assert_eq!(
                    interpreter(&mut f).unwrap().as_deref(),
                    Some("/lib/ld.so.1")
                );
                let path = dir.path().join(format!("static-{class}-{data}"));
                std::fs::write(&path, synthetic(class, data, 62, None)).unwrap();
                assert_eq!(interpreter(&mut File::open(&path).unwrap()).unwrap(), None);
            }
        }
        let script = dir.path().join("script");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert_eq!(
            interpreter(&mut File::open(&script).unwrap()).unwrap(),
            None
        );
    }

    #[test]
    fn real_binaries() {
        // The test binary itself is dynamically linked (Rust's default on Linux/glibc).
        let me = std::env::current_exe().unwrap();
        let mut f = File::open(&me).unwrap();
        let mut head = [0u8; HEADER_LEN];
        read_up_to(&mut f, &mut head).unwrap();
        let h = Header::parse(&head).unwrap();
        #[cfg(target_arch = "x86_64")]
        assert_eq!((h.class, h.data, h.machine), (CLASS_64, DATA_LSB, 62));
        let _ = h;
        #[cfg(target_env = "gnu")]
        assert!(interpreter(&mut f).unwrap().is_some());
    }
}
