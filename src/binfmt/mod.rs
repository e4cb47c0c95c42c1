//! QEMU user-mode emulators registered through binfmt_misc, so that the kernel runs another
//! architecture's programs (in a container too) through QEMU.
//!
//! The handler table is data (qemu/*.yaml: magic, mask, emulator, the platforms served). Install
//! mounts binfmt_misc when needed, finds a *static* emulator and registers it with the flags F
//! (the kernel opens the emulator at registration, so it works inside a container's root), P
//! (argv[0] kept) and C (credentials from the program, so setuid programs work). `ensure` is what
//! `run` and `build` call for a platform that is not native. `test` runs each architecture's
//! tiny program through the kernel the way a container would (probe, diagnose), and the versions
//! of registered emulators are checked against the known-bad table (known_bad).

mod data;
pub mod diagnose;
pub mod known_bad;
pub mod misc;
pub mod probe;

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use diagnose::{Failure, Runnable, TestReport, Verdict};
pub use known_bad::KnownBad;
pub use misc::{MiscFs, ProcMisc, Registration};
pub use probe::Isolation;

use crate::elf;
use crate::platform::Platform;

/// The flags manifold registers with unless told otherwise.
pub const DEFAULT_FLAGS: &str = "FPC";
/// The package that ships static emulators on Debian, Ubuntu and Fedora.
pub const EMULATOR_PACKAGE: &str = "qemu-user-static";
/// The first line of every handler file manifold writes under /etc/binfmt.d.
const PERSIST_MARKER: &str = "# Written by `manifold binfmt install --persist`";

#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    #[error("no QEMU handler is known for {0}")]
    NoHandler(String),
    #[error("`{0}` is neither a platform nor a QEMU handler name")]
    UnknownName(String),
    #[error(
        "this machine cannot run {platform}: its CPU lacks what the platform needs, and QEMU's \
         handler for it ({handler}) would also capture the machine's own programs"
    )]
    HostFamily { platform: String, handler: String },
    #[error("{what} needs root: binfmt_misc handlers are registered for the whole machine")]
    NotRoot { what: String, fix: String },
    #[error("no static QEMU emulator for {platform}: looked for {looked}")]
    NoEmulator {
        platform: String,
        looked: String,
        fix: String,
    },
    #[error(
        "{path} is dynamically linked (it needs {interpreter}); a handler with the F flag needs a \
         static emulator, since the loader is not in the container"
    )]
    Dynamic {
        path: PathBuf,
        interpreter: String,
        fix: String,
    },
    #[error(
        "`{name}` is registered without the F flag (flags `{flags}`): its emulator {interpreter} \
         cannot be found inside a container"
    )]
    NoFixFlag {
        name: String,
        flags: String,
        interpreter: PathBuf,
        fix: String,
    },
    #[error("`{name}` is registered but disabled")]
    Disabled { name: String, fix: String },
    #[error("invalid flags `{0}`: binfmt_misc takes P, O, C and F, each at most once")]
    BadFlags(String),
    #[error("cannot mount binfmt_misc on {path}")]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the kernel refused to register `{name}`")]
    Register {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl crate::hint::Hint for BinfmtError {
    fn hint(&self) -> Option<String> {
        match self {
            BinfmtError::NotRoot { fix, .. }
            | BinfmtError::NoEmulator { fix, .. }
            | BinfmtError::Dynamic { fix, .. }
            | BinfmtError::NoFixFlag { fix, .. }
            | BinfmtError::Disabled { fix, .. } => Some(fix.clone()),
            BinfmtError::NoHandler(_) | BinfmtError::UnknownName(_) => {
                Some("`manifold binfmt ls` lists the handlers and the platforms they serve".into())
            }
            BinfmtError::HostFamily { .. } => {
                Some("`manifold platforms` shows what this machine runs".into())
            }
            BinfmtError::Mount { .. } => Some(
                "the kernel needs binfmt_misc (CONFIG_BINFMT_MISC); inside a container, run it privileged"
                    .into(),
            ),
            _ => None,
        }
    }
}

pub type Result<T, E = BinfmtError> = std::result::Result<T, E>;

/// One QEMU handler from qemu/.
#[derive(Debug, Clone)]
pub struct Handler {
    /// QEMU's target name (`aarch64`), the file's name in qemu/.
    pub target: String,
    /// The binfmt_misc entry name (`qemu-aarch64`).
    pub name: String,
    /// The emulator program (`qemu-aarch64`).
    pub emulator: String,
    /// QEMU's CPU family: hosts of this family run these programs natively.
    pub family: String,
    pub platforms: Vec<Platform>,
    pub magic: Vec<u8>,
    pub mask: Vec<u8>,
    magic_text: String,
    mask_text: String,
}

impl Handler {
    pub fn all() -> &'static [Handler] {
        &data::HANDLERS
    }

    /// The handler serving a platform: exactly (after normalisation), or by architecture for a
    /// variant the table does not list.
    pub fn for_platform(platform: &Platform) -> Option<&'static Handler> {
        let p = platform.normalized();
        if p.os != "linux" {
            return None;
        }
        let all = Handler::all();
        all.iter().find(|h| h.platforms.contains(&p)).or_else(|| {
            all.iter()
                .find(|h| h.platforms.iter().any(|q| q.architecture == p.architecture))
        })
    }

    /// What `binfmt install|uninstall` take: `all`, a handler (`qemu-aarch64`, `aarch64`) or a
    /// platform (`linux/arm64`, `arm64`).
    pub fn parse_arg(arg: &str) -> Result<Vec<&'static Handler>> {
        if arg.eq_ignore_ascii_case("all") {
            return Ok(Handler::all().iter().collect());
        }
        if let Some(h) = Handler::all()
            .iter()
            .find(|h| h.name == arg || h.target == arg)
        {
            return Ok(vec![h]);
        }
        let platform = Platform::parse(arg).map_err(|_| BinfmtError::UnknownName(arg.into()))?;
        Handler::for_platform(&platform)
            .map(|h| vec![h])
            .ok_or_else(|| BinfmtError::NoHandler(platform.to_string()))
    }

    /// The platforms served, as `linux/arm64/v8,linux/arm64/v9`.
    pub fn platforms_label(&self) -> String {
        self.platforms
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The platform to name in messages: the first listed.
    pub fn main_platform(&self) -> &Platform {
        &self.platforms[0]
    }

    /// ELF class, byte order and machine of the programs it runs (bytes 4, 5 and 18-19 of the
    /// magic).
    pub fn elf_identity(&self) -> (u8, u8, u16) {
        let m = &self.magic;
        let machine = if m[5] == elf::DATA_MSB {
            u16::from_be_bytes([m[18], m[19]])
        } else {
            u16::from_le_bytes([m[18], m[19]])
        };
        (m[4], m[5], machine)
    }

    /// Whether the kernel would hand a file starting with `head` to this handler.
    pub fn matches(&self, head: &[u8]) -> bool {
        head.len() >= self.magic.len()
            && self
                .magic
                .iter()
                .zip(&self.mask)
                .zip(head)
                .all(|((m, k), b)| b & k == m & k)
    }

    /// The tiny program of this architecture that `binfmt test` runs (qemu/test-programs/).
    pub fn test_program(&self) -> &'static [u8] {
        data::TEST_PROGRAMS
            .iter()
            .find(|(t, _)| *t == self.target)
            .map(|(_, p)| *p)
            .unwrap_or_else(|| panic!("no test program for {}", self.target))
    }

    /// Whether this machine runs these programs itself (QEMU's rule: same CPU family).
    pub fn is_host_family(&self) -> bool {
        host_family() == Some(self.family.as_str())
    }

    /// The line written to binfmt_misc's `register` file (and to /etc/binfmt.d).
    pub fn register_line(&self, interpreter: &Path, flags: &str) -> String {
        format!(
            ":{}:M::{}:{}:{}:{}",
            self.name,
            self.magic_text,
            self.mask_text,
            interpreter.display(),
            flags
        )
    }

    /// Whether an existing registration is this handler: by name, or by the same magic and mask
    /// under another name (another tool's registration).
    fn is_registered_as(&self, r: &Registration) -> bool {
        r.name == self.name || (r.offset == 0 && r.magic == self.magic && r.mask == self.mask)
    }
}

/// The host's QEMU CPU family.
pub fn host_family() -> Option<&'static str> {
    Handler::for_platform(&Platform::host()).map(|h| h.family.as_str())
}

/// Whether this machine runs `platform` without emulation.
pub fn is_native(platform: &Platform) -> bool {
    Platform::host().matcher().matches(platform)
}

/// Validate `--flags`: P, O, C, F, each at most once, any order and case.
pub fn parse_flags(s: &str) -> Result<String> {
    let upper = s.to_ascii_uppercase();
    let mut seen = String::new();
    for c in upper.chars() {
        if !"POCF".contains(c) || seen.contains(c) {
            return Err(BinfmtError::BadFlags(s.to_string()));
        }
        seen.push(c);
    }
    Ok(seen)
}

/// Where to look for emulators: `--emulator-dir`, then `MANIFOLD_QEMU_DIR`, then PATH.
#[derive(Debug, Clone, Default)]
pub struct EmulatorSearch {
    pub dirs: Vec<PathBuf>,
    pub path: Option<OsString>,
}

/// An emulator found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulator {
    pub path: PathBuf,
}

impl Emulator {
    /// `7.2.22`, from `--version`'s first line (`qemu-aarch64 version 7.2.22 (Debian …)`).
    pub fn version(&self) -> Option<String> {
        emulator_version(&self.path)
    }
}

/// The version an emulator reports, None when it does not run or says nothing recognisable.
pub fn emulator_version(path: &Path) -> Option<String> {
    let out = Command::new(path).arg("--version").output().ok()?;
    version_from_output(&String::from_utf8_lossy(&out.stdout))
}

/// `7.2.22` from QEMU's `qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7)` first line.
fn version_from_output(text: &str) -> Option<String> {
    let first = text.lines().next()?;
    let (_, rest) = first.split_once(" version ")?;
    rest.split_whitespace().next().map(str::to_string)
}

/// Why no usable emulator was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmulatorProblem {
    NotFound { looked: Vec<PathBuf> },
    Dynamic { path: PathBuf, interpreter: String },
}

impl EmulatorSearch {
    /// `--emulator-dir` (when given), `MANIFOLD_QEMU_DIR`, then PATH.
    pub fn from_env(dir: Option<PathBuf>) -> EmulatorSearch {
        let mut dirs: Vec<PathBuf> = dir.into_iter().collect();
        if let Some(d) = std::env::var_os("MANIFOLD_QEMU_DIR").filter(|d| !d.is_empty()) {
            dirs.push(PathBuf::from(d));
        }
        EmulatorSearch {
            dirs,
            path: std::env::var_os("PATH"),
        }
    }

    /// The files looked at, in order.
    pub fn candidates(&self, h: &Handler) -> Vec<PathBuf> {
        let names = [format!("{}-static", h.emulator), h.emulator.clone()];
        let mut out = Vec::new();
        for dir in &self.dirs {
            for n in &names {
                out.push(dir.join(n));
            }
        }
        let path_dirs: Vec<PathBuf> = self
            .path
            .as_ref()
            .map(|p| std::env::split_paths(p).collect())
            .unwrap_or_default();
        for n in &names {
            for dir in &path_dirs {
                out.push(dir.join(n));
            }
        }
        out
    }

    /// The first static emulator among the candidates.
    pub fn find(&self, h: &Handler) -> Result<Emulator, EmulatorProblem> {
        let mut dynamic = None;
        let candidates = self.candidates(h);
        for c in &candidates {
            let Ok(meta) = fs::metadata(c) else { continue };
            if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
                continue;
            }
            match fs::File::open(c).and_then(|mut f| elf::interpreter(&mut f)) {
                Ok(None) => return Ok(Emulator { path: c.clone() }),
                Ok(Some(interpreter)) => {
                    dynamic.get_or_insert(EmulatorProblem::Dynamic {
                        path: c.clone(),
                        interpreter,
                    });
                }
                Err(_) => continue,
            }
        }
        Err(dynamic.unwrap_or(EmulatorProblem::NotFound { looked: candidates }))
    }
}

/// A handler's state on this machine.
#[derive(Debug, Clone)]
pub struct HandlerStatus {
    pub handler: &'static Handler,
    /// The host's own CPU family: never registered.
    pub native: bool,
    pub registration: Option<Registration>,
    pub emulator: Result<Emulator, EmulatorProblem>,
}

#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Validated by [`parse_flags`]; [`DEFAULT_FLAGS`] unless chosen.
    pub flags: String,
    /// Replace a registration that cannot work in containers (or any, with different flags).
    pub force: bool,
    /// Also write /etc/binfmt.d/<name>.conf.
    pub persist: bool,
}

impl InstallOptions {
    pub fn new() -> InstallOptions {
        InstallOptions {
            flags: DEFAULT_FLAGS.into(),
            force: false,
            persist: false,
        }
    }
}

#[derive(Debug, Clone)]
pub enum Installed {
    /// The host's own family: nothing to do.
    Native,
    /// Already registered and usable in containers.
    Present(Registration),
    /// Was registered but disabled; enabled again.
    Enabled(Registration),
    Registered {
        registration: Registration,
        /// What `--force` replaced.
        replaced: Option<Registration>,
    },
}

#[derive(Debug, Clone)]
pub enum Uninstalled {
    Native,
    NotRegistered,
    Removed(Registration),
    /// The same magic is registered under another name, by another tool: left alone.
    Foreign(Registration),
}

/// What [`Binfmt::ensure`] found or did.
#[derive(Debug, Clone)]
pub enum Ensured {
    Native,
    Ready(Registration),
    /// Registered just now (the caller says so).
    Registered(Registration),
}

/// binfmt_misc as manifold manages it.
pub struct Binfmt {
    misc: Box<dyn MiscFs>,
    search: EmulatorSearch,
    binfmt_d: PathBuf,
    is_root: bool,
}

impl Binfmt {
    /// The machine's: /proc/sys/fs/binfmt_misc, /etc/binfmt.d (`MANIFOLD_BINFMT_D` overrides),
    /// root when the effective uid is 0.
    pub fn system(search: EmulatorSearch) -> Binfmt {
        let binfmt_d = std::env::var_os("MANIFOLD_BINFMT_D")
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from("/etc/binfmt.d"), PathBuf::from);
        Binfmt {
            misc: Box::new(ProcMisc::default()),
            search,
            binfmt_d,
            is_root: rustix::process::geteuid().is_root(),
        }
    }

    pub fn with(
        misc: Box<dyn MiscFs>,
        search: EmulatorSearch,
        binfmt_d: PathBuf,
        is_root: bool,
    ) -> Binfmt {
        Binfmt {
            misc,
            search,
            binfmt_d,
            is_root,
        }
    }

    pub fn misc(&self) -> &dyn MiscFs {
        &*self.misc
    }

    pub fn search(&self) -> &EmulatorSearch {
        &self.search
    }

    /// Where `--persist` writes (/etc/binfmt.d, or `MANIFOLD_BINFMT_D`).
    pub fn persist_dir(&self) -> &Path {
        &self.binfmt_d
    }

    fn io(&self, what: &'static str, path: PathBuf) -> impl FnOnce(io::Error) -> BinfmtError {
        move |source| BinfmtError::Io { what, path, source }
    }

    fn registrations(&self) -> Result<Vec<Registration>> {
        self.misc
            .registrations()
            .map_err(self.io("read", self.misc.dir().to_path_buf()))
    }

    /// The registration serving `h`: its own name first, else the same magic under another name.
    pub fn registration(&self, h: &Handler) -> Result<Option<Registration>> {
        let all = self.registrations()?;
        Ok(find_registration(h, &all))
    }

    /// Every handler's state.
    pub fn status(&self) -> Result<Vec<HandlerStatus>> {
        let all = self.registrations()?;
        Ok(Handler::all()
            .iter()
            .map(|h| HandlerStatus {
                handler: h,
                native: h.is_host_family(),
                registration: find_registration(h, &all),
                emulator: self.search.find(h),
            })
            .collect())
    }

    fn require_root(&self, what: String, fix: String) -> Result<()> {
        if self.is_root {
            Ok(())
        } else {
            Err(BinfmtError::NotRoot { what, fix })
        }
    }

    fn ensure_mounted(&self) -> Result<()> {
        if self.misc.is_mounted() {
            return Ok(());
        }
        self.misc.mount().map_err(|source| BinfmtError::Mount {
            path: self.misc.dir().to_path_buf(),
            source,
        })
    }

    /// Register `h` (see the module doc). Idempotent.
    pub fn install(&self, h: &'static Handler, opts: &InstallOptions) -> Result<Installed> {
        if h.is_host_family() {
            return Ok(Installed::Native);
        }
        let platform = h.main_platform().to_string();
        self.require_root(
            format!("registering `{}`", h.name),
            format!("run it as root: `sudo manifold binfmt install {platform}`"),
        )?;
        self.ensure_mounted()?;
        let current = self.registration(h)?;
        let mut replaced = None;
        if let Some(r) = current {
            if !opts.force {
                if r.works_in_containers() {
                    self.persist_if(opts, h, &r)?;
                    return Ok(Installed::Present(r));
                }
                if !r.has_flag('F') {
                    return Err(BinfmtError::NoFixFlag {
                        name: r.name.clone(),
                        flags: r.flags.clone(),
                        interpreter: r.interpreter.clone(),
                        fix: format!(
                            "`sudo manifold binfmt install --force {platform}` replaces it with a static emulator and the F flag"
                        ),
                    });
                }
                // Registered with F, only disabled: switch it back on.
                self.misc
                    .write(&r.name, "1")
                    .map_err(self.io("enable", self.misc.dir().join(&r.name)))?;
                let r = self.registration(h)?.unwrap_or(r);
                self.persist_if(opts, h, &r)?;
                return Ok(Installed::Enabled(r));
            }
            self.misc
                .write(&r.name, "-1")
                .map_err(self.io("remove", self.misc.dir().join(&r.name)))?;
            replaced = Some(r);
        }
        let emulator = self.find_emulator(h, &platform)?;
        let line = h.register_line(&emulator.path, &opts.flags);
        if let Err(source) = self.misc.register(&line) {
            // Another process may have registered it between our look and our write.
            if source.raw_os_error() == Some(libc::EEXIST)
                && let Some(r) = self.registration(h)?
                && r.works_in_containers()
            {
                return Ok(Installed::Present(r));
            }
            return Err(BinfmtError::Register {
                name: h.name.clone(),
                source,
            });
        }
        let registration = self.registration(h)?.ok_or_else(|| BinfmtError::Register {
            name: h.name.clone(),
            source: io::Error::other("the entry did not appear after registration"),
        })?;
        self.persist_if(opts, h, &registration)?;
        Ok(Installed::Registered {
            registration,
            replaced,
        })
    }

    fn find_emulator(&self, h: &Handler, platform: &str) -> Result<Emulator> {
        let install = format!(
            "`sudo apt-get install {EMULATOR_PACKAGE}` installs the static emulators (Debian, Ubuntu); \
             or point --emulator-dir or MANIFOLD_QEMU_DIR at a directory holding {}-static",
            h.emulator
        );
        self.search.find(h).map_err(|p| match p {
            EmulatorProblem::NotFound { looked } => BinfmtError::NoEmulator {
                platform: platform.to_string(),
                looked: summarize_looked(&looked, &self.search, h),
                fix: install,
            },
            EmulatorProblem::Dynamic { path, interpreter } => BinfmtError::Dynamic {
                path,
                interpreter,
                fix: install,
            },
        })
    }

    /// Write the live registration, exactly as the kernel holds it, as the line systemd-binfmt
    /// writes back to `register` at boot.
    fn persist_if(&self, opts: &InstallOptions, h: &Handler, r: &Registration) -> Result<()> {
        if !opts.persist {
            return Ok(());
        }
        let line = r.register_line();
        fs::create_dir_all(&self.binfmt_d).map_err(self.io("create", self.binfmt_d.clone()))?;
        let path = self.persist_path(h);
        let text = format!("{PERSIST_MARKER}; `manifold binfmt uninstall` removes it.\n{line}\n");
        fs::write(&path, text).map_err(self.io("write", path.clone()))
    }

    fn persist_path(&self, h: &Handler) -> PathBuf {
        self.binfmt_d.join(format!("{}.conf", h.name))
    }

    /// Remove the handler manifold's name for `h` registered, and the /etc/binfmt.d file it
    /// wrote. A registration of the same magic under another name is another tool's: kept.
    pub fn uninstall(&self, h: &'static Handler) -> Result<Uninstalled> {
        if h.is_host_family() {
            return Ok(Uninstalled::Native);
        }
        let persisted = self.persist_path(h);
        let ours_on_disk = fs::read_to_string(&persisted)
            .map(|t| t.starts_with(PERSIST_MARKER))
            .unwrap_or(false);
        let current = self.registration(h)?;
        let needs_root = ours_on_disk || current.as_ref().is_some_and(|r| r.name == h.name);
        if needs_root {
            self.require_root(
                format!("removing `{}`", h.name),
                format!(
                    "run it as root: `sudo manifold binfmt uninstall {}`",
                    h.main_platform()
                ),
            )?;
        }
        if ours_on_disk {
            fs::remove_file(&persisted).map_err(self.io("remove", persisted.clone()))?;
        }
        match current {
            None => Ok(Uninstalled::NotRegistered),
            Some(r) if r.name != h.name => Ok(Uninstalled::Foreign(r)),
            Some(r) => {
                match self.misc.write(&r.name, "-1") {
                    Ok(()) => {}
                    // Removed by someone else meanwhile.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(self.io("remove", self.misc.dir().join(&r.name))(e)),
                }
                Ok(Uninstalled::Removed(r))
            }
        }
    }

    /// Make `platform` runnable here: native, already registered (usable in containers), or
    /// registered now when root and an emulator is present; otherwise an error naming the exact
    /// command that fixes it.
    pub fn ensure(&self, platform: &Platform) -> Result<Ensured> {
        if is_native(platform) {
            return Ok(Ensured::Native);
        }
        let shown = platform.to_string();
        let h =
            Handler::for_platform(platform).ok_or_else(|| BinfmtError::NoHandler(shown.clone()))?;
        if h.is_host_family() {
            return Err(BinfmtError::HostFamily {
                platform: shown,
                handler: h.name.clone(),
            });
        }
        if self.misc.is_mounted()
            && let Some(r) = self.registration(h)?
        {
            if r.works_in_containers() {
                return Ok(Ensured::Ready(r));
            }
            let fix = format!(
                "`sudo manifold binfmt install --force {shown}` registers a static emulator with the F flag"
            );
            if !r.enabled && r.has_flag('F') {
                if !self.is_root {
                    return Err(BinfmtError::Disabled {
                        name: r.name,
                        fix: format!("`sudo manifold binfmt install {shown}` enables it"),
                    });
                }
            } else if !r.has_flag('F') {
                return Err(BinfmtError::NoFixFlag {
                    name: r.name,
                    flags: r.flags,
                    interpreter: r.interpreter,
                    fix,
                });
            }
        }
        if !self.is_root {
            // Say whether an emulator is there, so the one command given is enough.
            let fix = match self.search.find(h) {
                Ok(_) => format!("`sudo manifold binfmt install {shown}`, then run again"),
                Err(_) => format!(
                    "install the emulators (`sudo apt-get install {EMULATOR_PACKAGE}` on Debian, Ubuntu), then `sudo manifold binfmt install {shown}`"
                ),
            };
            return Err(BinfmtError::NotRoot {
                what: format!(
                    "running {shown} programs needs the QEMU handler `{}`, and registering it",
                    h.name
                ),
                fix,
            });
        }
        match self.install(h, &InstallOptions::new())? {
            Installed::Native => Ok(Ensured::Native),
            Installed::Present(r) => Ok(Ensured::Ready(r)),
            Installed::Enabled(r) => Ok(Ensured::Registered(r)),
            Installed::Registered { registration, .. } => Ok(Ensured::Registered(registration)),
        }
    }
}

impl Binfmt {
    /// Run `h`'s test program through the kernel as a container would (see [`probe`]) and judge
    /// the result; with the emulator's version and the known-bad rows it falls in.
    pub fn test(&self, h: &'static Handler) -> Result<TestReport> {
        use diagnose::Interpreter;
        use probe::Ended;

        let registration = if self.misc.is_mounted() {
            self.registration(h)?
        } else {
            None
        };
        let program = h.test_program();
        let tmp = std::env::temp_dir();
        let run = |isolation| {
            probe::run(program, isolation, &[])
                .map_err(self.io("run a test program in", tmp.clone()))
        };
        let mut ran = run(Isolation::available(self.is_root))?;
        // A container (without CAP_SYS_CHROOT) may refuse the empty root itself.
        if ran.isolation.is_container_like() && ran.ended == Ended::NotExecuted(libc::EPERM) {
            ran = run(Isolation::Host)?;
        }
        let interpreter = registration
            .as_ref()
            .map_or(Interpreter::Other, |r| Interpreter::inspect(&r.interpreter));
        let verdict = diagnose::classify(h, registration.as_ref(), &interpreter, &ran);
        let version = match &registration {
            _ if verdict == Verdict::Native => None,
            Some(r) if interpreter != Interpreter::Missing => emulator_version(&r.interpreter),
            // The file is gone but the kernel holds it (F): QEMU answers QEMU_VERSION itself.
            Some(_) if verdict == Verdict::Works => {
                probe::run(program, ran.isolation, &[("QEMU_VERSION", "1")])
                    .ok()
                    .and_then(|r| version_from_output(&r.stdout))
            }
            _ => None,
        };
        let known_bad = version
            .as_deref()
            .map(|v| KnownBad::matching(&h.target, v))
            .unwrap_or_default();
        let note = match &registration {
            Some(r) if verdict == Verdict::Works && interpreter == Interpreter::Missing => {
                Some(format!(
                    "{} is gone from disk: the kernel keeps the copy it opened at registration \
                     until the handler is removed or the machine restarts",
                    r.interpreter.display()
                ))
            }
            _ => None,
        };
        Ok(TestReport {
            handler: h,
            registration,
            verdict,
            version,
            known_bad,
            isolation: ran.isolation,
            note,
        })
    }

    /// Whether this user can run `h`'s programs now, judged from the registration alone.
    pub fn runnable(&self, s: &HandlerStatus) -> Runnable {
        if s.native {
            return Runnable::Unsupported;
        }
        diagnose::runnable(s.registration.as_ref(), diagnose::can_execute)
    }

    /// One warning per known-bad row the emulator registered for `platform` falls in (none for
    /// a native platform, or when nothing is registered or its version cannot be asked).
    pub fn known_bad_warnings(&self, platform: &Platform) -> Vec<String> {
        if is_native(platform) || !self.misc.is_mounted() {
            return Vec::new();
        }
        let Some(h) = Handler::for_platform(platform) else {
            return Vec::new();
        };
        let Ok(Some(r)) = self.registration(h) else {
            return Vec::new();
        };
        let Some(version) = emulator_version(&r.interpreter) else {
            return Vec::new();
        };
        KnownBad::matching(&h.target, &version)
            .into_iter()
            .map(|k| k.warning(&r.name, &version))
            .collect()
    }
}

fn find_registration(h: &Handler, all: &[Registration]) -> Option<Registration> {
    all.iter()
        .find(|r| r.name == h.name)
        .or_else(|| all.iter().find(|r| h.is_registered_as(r)))
        .cloned()
}

/// `qemu-aarch64-static or qemu-aarch64 in /opt/qemu and on PATH`.
fn summarize_looked(looked: &[PathBuf], search: &EmulatorSearch, h: &Handler) -> String {
    let mut places: Vec<String> = search
        .dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    if search.path.is_some() {
        places.push("PATH".into());
    }
    if places.is_empty() || looked.is_empty() {
        return format!(
            "{}-static or {} (no directory to look in)",
            h.emulator, h.emulator
        );
    }
    format!(
        "{}-static or {} in {}",
        h.emulator,
        h.emulator,
        places.join(", ")
    )
}

#[cfg(test)]
mod tests;
