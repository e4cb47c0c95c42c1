use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;

use super::misc::fake::FakeMisc;
use super::*;
use crate::elf::tests::synthetic;
use crate::hint::Hint;

/// A handler this host does not run natively.
fn foreign() -> &'static Handler {
    let target = if host_family() == Some("arm") {
        "x86_64"
    } else {
        "aarch64"
    };
    Handler::all().iter().find(|h| h.target == target).unwrap()
}

/// A directory with a static (and optionally a dynamic) fake emulator for `h`.
fn emulator_dir(h: &Handler, dynamic_only: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (class, data, machine) = Handler::for_platform(&Platform::host())
        .map(|h| h.elf_identity())
        .unwrap_or((elf::CLASS_64, elf::DATA_LSB, 62));
    let interp = dynamic_only.then_some("/lib64/ld-linux-x86-64.so.2");
    let path = dir.path().join(format!("{}-static", h.emulator));
    fs::write(&path, synthetic(class, data, machine, interp)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn binfmt_with(misc: FakeMisc, dir: &Path, binfmt_d: &Path, root: bool) -> Binfmt {
    Binfmt::with(
        Box::new(misc),
        EmulatorSearch {
            dirs: vec![dir.to_path_buf()],
            path: None,
        },
        binfmt_d.to_path_buf(),
        root,
    )
}

#[test]
fn every_file_in_qemu_dir_is_embedded() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu");
    let on_disk: BTreeSet<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".yaml").map(str::to_string))
        // Not a handler: the known-bad versions table (known_bad.rs embeds it).
        .filter(|n| n != "known-bad")
        .collect();
    let embedded: BTreeSet<String> = data::FILES.iter().map(|(t, _)| t.to_string()).collect();
    assert_eq!(on_disk, embedded);
    for want in [
        "aarch64",
        "arm",
        "armeb",
        "i386",
        "x86_64",
        "ppc64le",
        "ppc64",
        "s390x",
        "riscv64",
        "mips64el",
        "mips64",
        "mipsel",
        "loongarch64",
    ] {
        assert!(embedded.contains(want), "{want}");
    }
}

/// Every known platform is foreign to some host, so every one needs a handler.
#[test]
fn every_known_platform_has_a_handler() {
    for known in Platform::known() {
        let p = known.platform();
        let h = Handler::for_platform(p).unwrap_or_else(|| panic!("no handler for {p}"));
        assert_eq!(
            h.target,
            known.qemu_arch(),
            "{p}: qemu/ and platforms/ disagree"
        );
        assert!(
            h.platforms.iter().any(|q| q == p),
            "{p} is served only by architecture fallback"
        );
    }
    assert!(Handler::for_platform(&Platform::parse("windows/amd64").unwrap()).is_none());
}

#[test]
fn handlers_are_consistent() {
    let mut names = BTreeSet::new();
    for h in Handler::all() {
        assert!(names.insert(h.name.clone()), "{} twice", h.name);
        assert_eq!(h.name, format!("qemu-{}", h.target));
        assert_eq!(h.emulator, h.name);
        assert_eq!(&h.magic[..4], b"\x7fELF", "{}", h.name);
        assert_eq!(h.magic.len(), h.mask.len());
        // The kernel compares masked bytes; identity bytes must be inside the mask.
        for i in [0, 1, 2, 3, 4, 18] {
            assert_eq!(h.mask[i], 0xff, "{}: byte {i} is masked", h.name);
        }
        for p in &h.platforms {
            assert_eq!(p, &p.normalized(), "{}: {p}", h.name);
            assert_eq!(Handler::for_platform(p).map(|x| &x.name), Some(&h.name));
        }
        let line = h.register_line(Path::new("/usr/bin/x"), "FPC");
        assert_eq!(line.split(':').count(), 8, "{line}");
        assert!(line.starts_with(&format!(":{}:M::\\x7f", h.name)), "{line}");
        assert!(line.ends_with(":/usr/bin/x:FPC"));
    }
}

#[test]
fn elf_identity_from_the_magic() {
    let id = |t: &str| {
        Handler::all()
            .iter()
            .find(|h| h.target == t)
            .unwrap()
            .elf_identity()
    };
    use crate::elf::{CLASS_32 as C32, CLASS_64 as C64, DATA_LSB as L, DATA_MSB as M};
    assert_eq!(id("aarch64"), (C64, L, 183));
    assert_eq!(id("x86_64"), (C64, L, 62));
    assert_eq!(id("i386"), (C32, L, 3));
    assert_eq!(id("arm"), (C32, L, 40));
    assert_eq!(id("armeb"), (C32, M, 40));
    assert_eq!(id("ppc64le"), (C64, L, 21));
    assert_eq!(id("ppc64"), (C64, M, 21));
    assert_eq!(id("s390x"), (C64, M, 22));
    assert_eq!(id("riscv64"), (C64, L, 243));
    assert_eq!(id("mips64el"), (C64, L, 8));
    assert_eq!(id("mips64"), (C64, M, 8));
    assert_eq!(id("mipsel"), (C32, L, 8));
    assert_eq!(id("loongarch64"), (C64, L, 258));
}

/// The kernel picks the first matching handler: each program must match exactly its own.
#[test]
fn each_handler_matches_only_its_own_programs() {
    for h in Handler::all() {
        let (class, data, machine) = h.elf_identity();
        let mut program = synthetic(class, data, machine, None);
        program.resize(64, 0);
        let matching: Vec<&str> = Handler::all()
            .iter()
            .filter(|o| o.matches(&program))
            .map(|o| o.name.as_str())
            .collect();
        assert_eq!(matching, vec![h.name.as_str()]);
    }
    assert!(!foreign().matches(b"#!/bin/sh\n"));
}

#[test]
fn arguments_name_handlers_or_platforms() {
    let names = |a: &str| -> Vec<String> {
        Handler::parse_arg(a)
            .unwrap()
            .iter()
            .map(|h| h.name.clone())
            .collect()
    };
    assert_eq!(names("linux/arm64"), ["qemu-aarch64"]);
    assert_eq!(names("arm64"), ["qemu-aarch64"]);
    assert_eq!(names("aarch64"), ["qemu-aarch64"]);
    assert_eq!(names("qemu-s390x"), ["qemu-s390x"]);
    assert_eq!(names("linux/arm/v5"), ["qemu-arm"]);
    assert_eq!(names("linux/mips64el"), ["qemu-mips64el"]);
    assert_eq!(names("all").len(), Handler::all().len());
    assert!(matches!(
        Handler::parse_arg("nonsense"),
        Err(BinfmtError::UnknownName(_))
    ));
    assert!(matches!(
        Handler::parse_arg("linux/sparc64"),
        Err(BinfmtError::NoHandler(_))
    ));
}

#[test]
fn flags() {
    assert_eq!(parse_flags("fpc").unwrap(), "FPC");
    assert_eq!(parse_flags("").unwrap(), "");
    assert_eq!(parse_flags("OCF").unwrap(), "OCF");
    assert!(parse_flags("FF").is_err());
    assert!(parse_flags("X").is_err());
}

#[test]
fn parses_kernel_entries() {
    let text = "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
    let r = Registration::parse("qemu-aarch64", text);
    assert!(r.enabled && r.works_in_containers());
    assert_eq!(r.flags, "POCF");
    assert_eq!(r.interpreter, Path::new("/usr/bin/qemu-aarch64-static"));
    let h = Handler::parse_arg("aarch64").unwrap()[0];
    assert_eq!(r.magic, h.magic);
    assert_eq!(r.mask, h.mask);
    assert!(h.is_registered_as(&Registration {
        name: "aarch64-by-another-tool".into(),
        ..r.clone()
    }));
    let line = r.register_line();
    assert!(
        line.starts_with(":qemu-aarch64:M:0:\\x7f\\x45\\x4c\\x46"),
        "{line}"
    );
    assert!(line.ends_with(":/usr/bin/qemu-aarch64-static:POCF"));
    let disabled = Registration::parse("x", "disabled\ninterpreter /x\nflags: F\n");
    assert!(!disabled.enabled && !disabled.works_in_containers());
    let no_f = Registration::parse("x", "enabled\ninterpreter /x\nflags: OC\n");
    assert!(!no_f.works_in_containers());
}

#[test]
fn finds_static_emulators_and_refuses_dynamic_ones() {
    let h = foreign();
    let good = emulator_dir(h, false);
    let search = EmulatorSearch {
        dirs: vec![good.path().to_path_buf()],
        path: None,
    };
    assert_eq!(
        search.find(h).unwrap().path,
        good.path().join(format!("{}-static", h.emulator))
    );
    let bad = emulator_dir(h, true);
    let search = EmulatorSearch {
        dirs: vec![bad.path().to_path_buf()],
        path: None,
    };
    assert!(matches!(
        search.find(h),
        Err(EmulatorProblem::Dynamic { .. })
    ));
    // A static one later in the search wins over a dynamic one earlier.
    let search = EmulatorSearch {
        dirs: vec![bad.path().to_path_buf(), good.path().to_path_buf()],
        path: None,
    };
    assert!(search.find(h).unwrap().path.starts_with(good.path()));
    let empty = tempfile::tempdir().unwrap();
    let search = EmulatorSearch {
        dirs: vec![],
        path: Some(empty.path().as_os_str().to_owned()),
    };
    assert!(matches!(
        search.find(h),
        Err(EmulatorProblem::NotFound { looked }) if looked.len() == 2
    ));
}

#[test]
fn install_mounts_registers_and_is_idempotent() {
    let h = foreign();
    let emu = emulator_dir(h, false);
    let etc = tempfile::tempdir().unwrap();
    let b = binfmt_with(FakeMisc::default(), emu.path(), etc.path(), true);
    let opts = InstallOptions {
        persist: true,
        ..InstallOptions::new()
    };
    let Installed::Registered {
        registration,
        replaced,
    } = b.install(h, &opts).unwrap()
    else {
        panic!("not registered")
    };
    assert!(replaced.is_none());
    assert!(registration.works_in_containers());
    assert_eq!(registration.flags, "POCF");
    assert!(registration.interpreter.starts_with(emu.path()));
    let persisted = fs::read_to_string(etc.path().join(format!("{}.conf", h.name))).unwrap();
    assert!(persisted.starts_with(PERSIST_MARKER));
    assert!(persisted.contains(&registration.register_line()));
    // What systemd-binfmt does at boot recreates exactly this registration.
    let rebooted = FakeMisc::mounted();
    replay_like_systemd_binfmt(etc.path(), &rebooted);
    assert_eq!(
        rebooted.registrations().unwrap(),
        vec![registration.clone()]
    );
    assert!(matches!(
        b.install(h, &InstallOptions::new()).unwrap(),
        Installed::Present(_)
    ));
    // Native handlers are never registered.
    if let Some(native) = Handler::all().iter().find(|h| h.is_host_family()) {
        assert!(matches!(
            b.install(native, &InstallOptions::new()).unwrap(),
            Installed::Native
        ));
    }
    let Uninstalled::Removed(r) = b.uninstall(h).unwrap() else {
        panic!("not removed")
    };
    assert_eq!(r.name, h.name);
    assert!(!etc.path().join(format!("{}.conf", h.name)).exists());
    assert!(matches!(
        b.uninstall(h).unwrap(),
        Uninstalled::NotRegistered
    ));
}

#[test]
fn a_handler_without_f_is_replaced_only_with_force() {
    let h = foreign();
    let emu = emulator_dir(h, false);
    let etc = tempfile::tempdir().unwrap();
    let misc = FakeMisc::mounted();
    misc.insert(Registration {
        name: h.name.clone(),
        enabled: true,
        interpreter: PathBuf::from("/usr/bin/qemu-dynamic"),
        flags: "OC".into(),
        offset: 0,
        magic: h.magic.clone(),
        mask: h.mask.clone(),
    });
    let b = binfmt_with(misc, emu.path(), etc.path(), true);
    let err = b.install(h, &InstallOptions::new()).unwrap_err();
    assert!(matches!(err, BinfmtError::NoFixFlag { .. }), "{err}");
    assert!(err.hint().unwrap().contains("--force"));
    let err = b.ensure(h.main_platform()).unwrap_err();
    assert!(matches!(err, BinfmtError::NoFixFlag { .. }), "{err}");
    let forced = InstallOptions {
        force: true,
        ..InstallOptions::new()
    };
    let Installed::Registered {
        registration,
        replaced: Some(old),
    } = b.install(h, &forced).unwrap()
    else {
        panic!("not replaced")
    };
    assert_eq!(old.flags, "OC");
    assert!(registration.works_in_containers());
}

#[test]
fn another_tools_registration_is_used_and_left_alone() {
    let h = foreign();
    let emu = emulator_dir(h, false);
    let etc = tempfile::tempdir().unwrap();
    let misc = FakeMisc::mounted();
    misc.insert(Registration {
        name: "someone-elses".into(),
        enabled: true,
        interpreter: PathBuf::from("/opt/qemu"),
        flags: "F".into(),
        offset: 0,
        magic: h.magic.clone(),
        mask: h.mask.clone(),
    });
    let b = binfmt_with(misc, emu.path(), etc.path(), true);
    assert!(
        matches!(b.ensure(h.main_platform()).unwrap(), Ensured::Ready(r) if r.name == "someone-elses")
    );
    assert!(matches!(b.uninstall(h).unwrap(), Uninstalled::Foreign(_)));
    assert!(b.registration(h).unwrap().is_some());
}

#[test]
fn ensure_says_exactly_what_to_run() {
    let h = foreign();
    let platform = h.main_platform();
    let emu = emulator_dir(h, false);
    let etc = tempfile::tempdir().unwrap();
    assert!(matches!(
        binfmt_with(FakeMisc::default(), emu.path(), etc.path(), false)
            .ensure(&Platform::host())
            .unwrap(),
        Ensured::Native
    ));
    // Not root, emulator present: the one command to run.
    let err = binfmt_with(FakeMisc::default(), emu.path(), etc.path(), false)
        .ensure(platform)
        .unwrap_err();
    assert!(matches!(err, BinfmtError::NotRoot { .. }));
    assert_eq!(
        err.hint().unwrap(),
        format!("`sudo manifold binfmt install {platform}`, then run again")
    );
    // Not root, no emulator: install the package first.
    let none = tempfile::tempdir().unwrap();
    let err = binfmt_with(FakeMisc::default(), none.path(), etc.path(), false)
        .ensure(platform)
        .unwrap_err();
    assert!(
        err.hint().unwrap().contains(EMULATOR_PACKAGE),
        "{:?}",
        err.hint()
    );
    // Root, no emulator: the package.
    let err = binfmt_with(FakeMisc::default(), none.path(), etc.path(), true)
        .ensure(platform)
        .unwrap_err();
    assert!(matches!(err, BinfmtError::NoEmulator { .. }), "{err}");
    assert!(
        err.hint()
            .unwrap()
            .contains("apt-get install qemu-user-static")
    );
    // Root, emulator present: registered on the spot.
    let b = binfmt_with(FakeMisc::default(), emu.path(), etc.path(), true);
    assert!(matches!(
        b.ensure(platform).unwrap(),
        Ensured::Registered(_)
    ));
    assert!(matches!(b.ensure(platform).unwrap(), Ensured::Ready(_)));
    // A dynamically linked emulator is refused.
    let dynamic = emulator_dir(h, true);
    let err = binfmt_with(FakeMisc::default(), dynamic.path(), etc.path(), true)
        .ensure(platform)
        .unwrap_err();
    assert!(matches!(err, BinfmtError::Dynamic { .. }), "{err}");
}

#[test]
fn uninstall_as_non_root_is_refused_when_there_is_something_to_remove() {
    let h = foreign();
    let emu = emulator_dir(h, false);
    let etc = tempfile::tempdir().unwrap();
    let misc = FakeMisc::mounted();
    misc.insert(Registration {
        name: h.name.clone(),
        enabled: true,
        interpreter: PathBuf::from("/x"),
        flags: "F".into(),
        offset: 0,
        magic: h.magic.clone(),
        mask: h.mask.clone(),
    });
    let b = binfmt_with(misc, emu.path(), etc.path(), false);
    assert!(matches!(
        b.uninstall(h).unwrap_err(),
        BinfmtError::NotRoot { .. }
    ));
    let b = binfmt_with(FakeMisc::mounted(), emu.path(), etc.path(), false);
    assert!(matches!(
        b.uninstall(h).unwrap(),
        Uninstalled::NotRegistered
    ));
}

/// systemd-binfmt at boot: every line of every `*.conf` file, comments (`#`, `;`) and blank
/// lines skipped, written to `register` after removing an entry of the same name.
fn replay_like_systemd_binfmt(dir: &Path, misc: &dyn MiscFs) {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf"))
        .collect();
    files.sort();
    for f in files {
        for line in fs::read_to_string(&f).unwrap().lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let name = line[1..].split(&line[..1]).next().unwrap();
            let _ = misc.write(name, "-1");
            misc.register(line).unwrap();
        }
    }
}

#[test]
fn persisting_a_present_registration_keeps_its_own_flags_and_name() {
    // Registered by another tool, under its own name, with flags manifold would not choose.
    let h = foreign();
    let emu = emulator_dir(h, false);
    let etc = tempfile::tempdir().unwrap();
    let misc = FakeMisc::mounted();
    let line = h
        .register_line(&emu.path().join(format!("{}-static", h.emulator)), "OCF")
        .replacen(&format!(":{}:", h.name), ":by-another-tool:", 1);
    misc.register(&line).unwrap();
    let before = misc.registrations().unwrap();
    let b = binfmt_with(misc, emu.path(), etc.path(), true);
    let opts = InstallOptions {
        persist: true,
        ..InstallOptions::new()
    };
    assert!(matches!(
        b.install(h, &opts).unwrap(),
        Installed::Present(_)
    ));
    let rebooted = FakeMisc::mounted();
    replay_like_systemd_binfmt(etc.path(), &rebooted);
    assert_eq!(rebooted.registrations().unwrap(), before);
}

// --- binfmt test: the programs, and the verdicts ------------------------------------------------

#[test]
fn every_architecture_has_a_tiny_well_formed_test_program() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu/test-programs");
    for h in Handler::all() {
        let p = h.test_program();
        assert!(p.len() < 512, "{}: {} bytes", h.target, p.len());
        let header = elf::Header::parse(p).unwrap_or_else(|| panic!("{}: not ELF", h.target));
        let (class, data, machine) = h.elf_identity();
        assert_eq!(
            (header.class, header.data, header.machine),
            (class, data, machine),
            "{}",
            h.target
        );
        assert_eq!(header.file_type, 2, "{}: ET_EXEC", h.target);
        // The kernel hands it to this handler, and to no other.
        assert!(h.matches(p), "{}", h.target);
        for other in Handler::all().iter().filter(|o| o.name != h.name) {
            assert!(!other.matches(p), "{} matches {}", h.target, other.name);
        }
        let expected = data::test_output(&h.target);
        assert!(
            p.windows(expected.len()).any(|w| w == expected.as_bytes()),
            "{}: the test line is not in the program",
            h.target
        );
        // Static, and what is embedded is what is committed next to its source.
        let committed = dir.join(format!("{}.bin", h.target));
        assert_eq!(fs::read(&committed).unwrap(), p);
        let mut f = fs::File::open(&committed).unwrap();
        assert_eq!(elf::interpreter(&mut f).unwrap(), None, "{}", h.target);
        assert!(dir.join(format!("{}.s", h.target)).is_file());
    }
    assert_eq!(data::TEST_PROGRAMS.len(), Handler::all().len());
}

fn ran(ended: probe::Ended, stdout: &str) -> probe::Ran {
    probe::Ran {
        isolation: Isolation::EmptyRoot,
        ended,
        stdout: stdout.into(),
        stderr: String::new(),
    }
}

fn registration(h: &Handler, interpreter: &str, flags: &str) -> Registration {
    Registration {
        name: h.name.clone(),
        enabled: true,
        interpreter: PathBuf::from(interpreter),
        flags: flags.into(),
        offset: 0,
        magic: h.magic.clone(),
        mask: h.mask.clone(),
    }
}

#[test]
fn verdicts_name_the_reason() {
    use diagnose::{Interpreter, classify};
    use probe::Ended;
    let h = foreign();
    let ok = data::test_output(&h.target);
    let with_f = registration(h, "/usr/bin/qemu-static", "POCF");
    let without_f = registration(h, "/gone/qemu-static", "");
    let verdict = |r: Option<&Registration>, i: &Interpreter, run: &probe::Ran| {
        let v = classify(h, r, i, run);
        match v {
            Verdict::Fails(f) => f.reason().to_string(),
            other => format!("{other:?}"),
        }
    };
    let exited = ran(Ended::Exited(0), &ok);
    assert_eq!(
        verdict(Some(&with_f), &Interpreter::Static, &exited),
        "Works"
    );
    // The kernel found no handler.
    let noexec = ran(Ended::NotExecuted(libc::ENOEXEC), "");
    assert_eq!(
        verdict(None, &Interpreter::Other, &noexec),
        "exec format error"
    );
    let disabled = Registration {
        enabled: false,
        ..with_f.clone()
    };
    assert_eq!(
        verdict(Some(&disabled), &Interpreter::Static, &noexec),
        "handler disabled"
    );
    // In the empty root, without F, the emulator's path does not resolve.
    let noent = ran(Ended::NotExecuted(libc::ENOENT), "");
    assert_eq!(
        verdict(Some(&without_f), &Interpreter::Missing, &noent),
        "emulator missing"
    );
    assert_eq!(
        verdict(Some(&without_f), &Interpreter::Static, &noent),
        "no F flag"
    );
    let dynamic = Interpreter::Dynamic("/lib64/ld-linux-x86-64.so.2".into());
    assert_eq!(
        verdict(Some(&without_f), &dynamic, &noent),
        "dynamic emulator without the F flag"
    );
    assert_eq!(verdict(Some(&with_f), &dynamic, &noent), "dynamic emulator");
    // The emulator ran and failed.
    assert_eq!(
        verdict(
            Some(&with_f),
            &Interpreter::Static,
            &ran(Ended::Signaled(libc::SIGSEGV), "")
        ),
        "killed by a signal"
    );
    assert_eq!(
        verdict(
            Some(&with_f),
            &Interpreter::Static,
            &ran(Ended::Exited(0), "hello\n")
        ),
        "wrong output"
    );
    assert_eq!(
        verdict(
            Some(&with_f),
            &Interpreter::Static,
            &ran(Ended::Exited(3), "")
        ),
        "exit status"
    );
    assert_eq!(
        verdict(
            Some(&with_f),
            &Interpreter::Static,
            &ran(Ended::TimedOut, "")
        ),
        "timed out"
    );
    // Run on the host's root (no user namespaces): judged from the registration.
    let on_host = probe::Ran {
        isolation: Isolation::Host,
        ..exited.clone()
    };
    assert_eq!(
        verdict(Some(&without_f), &Interpreter::Static, &on_host),
        "no F flag"
    );
    assert_eq!(
        verdict(Some(&with_f), &dynamic, &on_host),
        "dynamic emulator"
    );
    assert_eq!(
        verdict(Some(&with_f), &Interpreter::Static, &on_host),
        "Works"
    );
}

#[test]
fn failures_say_what_happened_and_what_fixes_it() {
    let f = Failure::EmulatorMissing {
        interpreter: PathBuf::from("/usr/bin/qemu-aarch64"),
    };
    assert_eq!(
        f.detail(),
        "/usr/bin/qemu-aarch64 does not exist; without the F flag the kernel opens it at each exec"
    );
    assert!(
        f.fix("linux/arm64")
            .contains("`sudo manifold binfmt install --force linux/arm64`")
    );
    let f = Failure::Signal {
        signal: libc::SIGSEGV,
        stderr: "qemu: uncaught target signal 11 (Segmentation fault) - core dumped\n".into(),
    };
    assert_eq!(
        f.detail(),
        "killed by SIGSEGV (segmentation fault): qemu: uncaught target signal 11 (Segmentation fault) - core dumped"
    );
    assert!(
        Failure::NotRegistered
            .fix("linux/s390x")
            .starts_with("`sudo manifold binfmt install linux/s390x --persist`")
    );
}

#[test]
fn whether_this_user_can_run_it_is_judged_from_the_registration() {
    let h = foreign();
    let dir = emulator_dir(h, false);
    let emulator = dir.path().join(format!("{}-static", h.emulator));
    let yes = |_: &Path| true;
    let no = |_: &Path| false;
    assert_eq!(diagnose::runnable(None, yes), Runnable::NotRegistered);
    let with_f = registration(h, "/nonexistent/qemu", "POCF");
    // F: the kernel holds the emulator; its path and this user's rights do not matter.
    assert_eq!(
        diagnose::runnable(Some(&with_f), no),
        Runnable::Runs { host_only: false }
    );
    let disabled = Registration {
        enabled: false,
        ..with_f
    };
    assert!(matches!(
        diagnose::runnable(Some(&disabled), yes),
        Runnable::Broken(why) if why.contains("disabled")
    ));
    let without_f = registration(h, emulator.to_str().unwrap(), "");
    assert_eq!(
        diagnose::runnable(Some(&without_f), yes),
        Runnable::Runs { host_only: true }
    );
    assert!(matches!(
        diagnose::runnable(Some(&without_f), no),
        Runnable::Broken(why) if why.contains("not executable by this user")
    ));
    let gone = registration(h, "/nonexistent/qemu", "");
    assert!(matches!(
        diagnose::runnable(Some(&gone), yes),
        Runnable::Broken(why) if why.starts_with("emulator missing")
    ));
}

#[test]
fn a_registered_emulator_of_a_known_bad_version_is_warned_about() {
    let h = Handler::all()
        .iter()
        .find(|h| h.target == "aarch64")
        .unwrap();
    if h.is_host_family() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let stub = |version: &str| {
        let path = dir.path().join(format!("qemu-aarch64-{version}"));
        fs::write(
            &path,
            format!("#!/bin/sh\necho 'qemu-aarch64 version {version} (stub)'\n"),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    };
    let platform = Platform::parse("linux/arm64").unwrap();
    for (version, warned) in [("9.2.0", true), ("7.2.22", false)] {
        let misc = FakeMisc::mounted();
        misc.insert(registration(h, stub(version).to_str().unwrap(), "POCF"));
        let b = binfmt_with(misc, dir.path(), dir.path(), false);
        let warnings = b.known_bad_warnings(&platform);
        assert_eq!(!warnings.is_empty(), warned, "{version}: {warnings:?}");
        if warned {
            assert!(
                warnings[0].starts_with("qemu-aarch64 is QEMU 9.2.0, known to crash ldconfig"),
                "{warnings:?}"
            );
        }
    }
    // Native platforms and unregistered handlers: nothing to say.
    let b = binfmt_with(FakeMisc::mounted(), dir.path(), dir.path(), false);
    assert!(b.known_bad_warnings(&platform).is_empty());
    assert!(b.known_bad_warnings(&Platform::host()).is_empty());
}
