//! The binfmt_misc filesystem behind a small trait: the real one under /proc, and an in-memory
//! fake for unit tests (registering handlers is global to the machine and needs root).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where the kernel exposes binfmt_misc.
pub const PROC_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// One registered handler, as `/proc/sys/fs/binfmt_misc/<name>` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Registration {
    pub name: String,
    pub enabled: bool,
    pub interpreter: PathBuf,
    /// As the kernel prints them (`POCF`); empty when none.
    pub flags: String,
    pub offset: u32,
    #[serde(skip)]
    pub magic: Vec<u8>,
    #[serde(skip)]
    pub mask: Vec<u8>,
}

impl Registration {
    /// Parse an entry file. Entries matching by extension (`E`) have no magic.
    pub fn parse(name: &str, text: &str) -> Registration {
        let mut r = Registration {
            name: name.to_string(),
            enabled: false,
            interpreter: PathBuf::new(),
            flags: String::new(),
            offset: 0,
            magic: Vec::new(),
            mask: Vec::new(),
        };
        for line in text.lines() {
            let line = line.trim();
            if line == "enabled" {
                r.enabled = true;
            } else if let Some(v) = line.strip_prefix("interpreter ") {
                r.interpreter = PathBuf::from(v);
            } else if let Some(v) = line.strip_prefix("flags:") {
                r.flags = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("offset ") {
                r.offset = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("magic ") {
                r.magic = hex::decode(v.trim()).unwrap_or_default();
            } else if let Some(v) = line.strip_prefix("mask ") {
                r.mask = hex::decode(v.trim()).unwrap_or_default();
            }
        }
        if r.mask.is_empty() && !r.magic.is_empty() {
            r.mask = vec![0xff; r.magic.len()];
        }
        r
    }

    pub fn has_flag(&self, flag: char) -> bool {
        self.flags.contains(flag)
    }

    /// Whether programs inside a container can use it: enabled, and with the F flag the kernel
    /// opened the emulator when it was registered, so it need not exist in the container's root.
    pub fn works_in_containers(&self) -> bool {
        self.enabled && self.has_flag('F')
    }

    /// The register line that would recreate this entry (used to restore what was there).
    pub fn register_line(&self) -> String {
        let esc = |b: &[u8]| b.iter().map(|b| format!("\\x{b:02x}")).collect::<String>();
        format!(
            ":{}:M:{}:{}:{}:{}:{}",
            self.name,
            self.offset,
            esc(&self.magic),
            esc(&self.mask),
            self.interpreter.display(),
            self.flags
        )
    }
}

/// What manifold does with binfmt_misc.
pub trait MiscFs: Send + Sync {
    /// The directory (for messages).
    fn dir(&self) -> &Path;
    /// Whether the filesystem is mounted (its `register` file exists).
    fn is_mounted(&self) -> bool;
    fn mount(&self) -> io::Result<()>;
    /// The names of the registered entries.
    fn names(&self) -> io::Result<Vec<String>>;
    /// An entry's file, None when it is not registered.
    fn read(&self, name: &str) -> io::Result<Option<String>>;
    /// Write a line to `register`.
    fn register(&self, line: &str) -> io::Result<()>;
    /// Write to an entry's file: `-1` removes it, `1` enables it, `0` disables it.
    fn write(&self, name: &str, value: &str) -> io::Result<()>;

    /// Every registration.
    fn registrations(&self) -> io::Result<Vec<Registration>> {
        if !self.is_mounted() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for name in self.names()? {
            if let Some(text) = self.read(&name)? {
                out.push(Registration::parse(&name, &text));
            }
        }
        Ok(out)
    }
}

/// The kernel's binfmt_misc under /proc/sys/fs/binfmt_misc.
pub struct ProcMisc {
    dir: PathBuf,
}

impl Default for ProcMisc {
    fn default() -> Self {
        ProcMisc {
            dir: PathBuf::from(PROC_DIR),
        }
    }
}

impl MiscFs for ProcMisc {
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn is_mounted(&self) -> bool {
        self.dir.join("register").exists()
    }

    fn mount(&self) -> io::Result<()> {
        use rustix::mount::{MountFlags, mount};
        mount(
            "binfmt_misc",
            &self.dir,
            "binfmt_misc",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None,
        )
        .map_err(io::Error::from)
    }

    fn names(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name != "register" && name != "status" {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, name: &str) -> io::Result<Option<String>> {
        match fs::read_to_string(self.dir.join(name)) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn register(&self, line: &str) -> io::Result<()> {
        // One write(2): the kernel parses each write as a whole entry.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("register"))?;
        f.write_all(line.as_bytes())
    }

    fn write(&self, name: &str, value: &str) -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join(name))?;
        f.write_all(value.as_bytes())
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory binfmt_misc that parses register lines like the kernel.
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct FakeMisc {
        pub mounted: Mutex<bool>,
        pub entries: Mutex<BTreeMap<String, Registration>>,
        pub log: Mutex<Vec<String>>,
    }

    impl FakeMisc {
        pub fn mounted() -> FakeMisc {
            let f = FakeMisc::default();
            *f.mounted.lock().unwrap() = true;
            f
        }

        pub fn insert(&self, r: Registration) {
            self.entries.lock().unwrap().insert(r.name.clone(), r);
        }
    }

    impl MiscFs for FakeMisc {
        fn dir(&self) -> &Path {
            Path::new("/fake/binfmt_misc")
        }
        fn is_mounted(&self) -> bool {
            *self.mounted.lock().unwrap()
        }
        fn mount(&self) -> io::Result<()> {
            self.log.lock().unwrap().push("mount".into());
            *self.mounted.lock().unwrap() = true;
            Ok(())
        }
        fn names(&self) -> io::Result<Vec<String>> {
            Ok(self.entries.lock().unwrap().keys().cloned().collect())
        }
        fn read(&self, name: &str) -> io::Result<Option<String>> {
            Ok(self.entries.lock().unwrap().get(name).map(|r| {
                format!(
                    "{}\ninterpreter {}\nflags: {}\noffset {}\nmagic {}\nmask {}\n",
                    if r.enabled { "enabled" } else { "disabled" },
                    r.interpreter.display(),
                    r.flags,
                    r.offset,
                    hex::encode(&r.magic),
                    hex::encode(&r.mask)
                )
            }))
        }
        fn register(&self, line: &str) -> io::Result<()> {
            self.log.lock().unwrap().push(format!("register {line}"));
            let fields: Vec<&str> = line.split(':').collect();
            assert_eq!(fields.len(), 8, "register line `{line}`");
            let name = fields[1].to_string();
            let mut entries = self.entries.lock().unwrap();
            if entries.contains_key(&name) {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            let mut flags = String::new();
            for f in ['P', 'O', 'C', 'F'] {
                if fields[7].contains(f) || (f == 'O' && fields[7].contains('C')) {
                    flags.push(f);
                }
            }
            let magic = super::super::data::unescape(fields[4]).unwrap();
            let mask = super::super::data::unescape(fields[5]).unwrap();
            entries.insert(
                name.clone(),
                Registration {
                    name,
                    enabled: true,
                    interpreter: PathBuf::from(fields[6]),
                    flags,
                    offset: fields[3].parse().unwrap_or(0),
                    magic,
                    mask,
                },
            );
            Ok(())
        }
        fn write(&self, name: &str, value: &str) -> io::Result<()> {
            self.log
                .lock()
                .unwrap()
                .push(format!("write {name} {value}"));
            let mut entries = self.entries.lock().unwrap();
            let e = entries
                .get_mut(name)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
            match value {
                "-1" => {
                    entries.remove(name);
                }
                "1" => e.enabled = true,
                "0" => e.enabled = false,
                _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
            }
            Ok(())
        }
    }
}
