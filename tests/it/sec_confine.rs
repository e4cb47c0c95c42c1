//! Confinement of containers and RUN steps (issue 9, items 2–4), with real runc: podman's
//! capability set (no NET_RAW, MKNOD, AUDIT_WRITE), nothing a non-root user keeps across exec,
//! docker's seccomp policy (also under QEMU), and `--cap-add`, `--cap-drop`, `--privileged`,
//! `--security-opt seccomp=…|no-new-privileges` with their errors.

use std::fs;
use std::process::Output;

use crate::binfmt::BinfmtLease;
use crate::harness::{TestRoot, busybox_rootfs, skip_unless};
use crate::local::{import, multiarch};
use crate::run::{RawTar, with_layers};
use manifold::runtime::spec::{CapSet, Host};

/// podman's default capabilities, as the kernel numbers them.
const PODMAN: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_SETFCAP",
];

fn host_busybox(root: &TestRoot) {
    #[cfg(target_arch = "x86_64")]
    import(root, "amd64", "linux/amd64", "busybox:latest");
    #[cfg(target_arch = "aarch64")]
    import(root, "arm64", "linux/arm64", "busybox:latest");
}

fn run(root: &TestRoot, flags: &[&str], command: &str) -> Output {
    root.manifold()
        .args(["run", "--rm"])
        .args(flags)
        .args(["busybox", "sh", "-c", command])
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `Field:\tvalue` of a /proc/PID/status dump.
fn field<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .trim()
}

fn caps(status: &str, name: &str) -> CapSet {
    CapSet::from_mask(u64::from_str_radix(field(status, name), 16).unwrap())
}

const STATUS: &str = "cat /proc/self/status";

#[test]
fn default_capabilities_are_podmans_and_a_non_root_user_keeps_none() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let out = run(&root, &[], STATUS);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = text(&out.stdout);
    let mut want: Vec<String> = PODMAN.iter().map(|s| s.to_string()).collect();
    let bounding = caps(&status, "CapBnd").names();
    want.sort();
    let mut got = bounding.clone();
    got.sort();
    assert_eq!(got, want);
    for gone in ["CAP_NET_RAW", "CAP_MKNOD", "CAP_AUDIT_WRITE"] {
        assert!(!bounding.iter().any(|c| c == gone), "{gone}");
    }
    assert_eq!(caps(&status, "CapEff"), caps(&status, "CapBnd"));
    assert_eq!(caps(&status, "CapInh"), CapSet::EMPTY);
    assert_eq!(caps(&status, "CapAmb"), CapSet::EMPTY);

    // A non-root user, by -u and by the image's USER: nothing kept across exec (before:
    // KILL, NET_BIND_SERVICE and AUDIT_WRITE in every set but the bounding one).
    let out = run(&root, &["-u", "nobody"], STATUS);
    let status = text(&out.stdout);
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(caps(&status, set), CapSet::EMPTY, "{set}: {status}");
    }
    #[cfg(target_arch = "x86_64")]
    let (arch, platform) = ("amd64", "linux/amd64");
    #[cfg(target_arch = "aarch64")]
    let (arch, platform) = ("arm64", "linux/arm64");
    root.manifold()
        .args(["import", "--platform", platform, "-c", "USER 1234"])
        .arg(busybox_rootfs(arch, "tar.gz"))
        .arg("asuser")
        .assert()
        .success();
    let out = root
        .manifold()
        .args(["run", "--rm", "asuser", "sh", "-c", STATUS])
        .output()
        .unwrap();
    let status = text(&out.stdout);
    assert_eq!(
        field(&status, "Uid").split_whitespace().next(),
        Some("1234")
    );
    for set in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        assert_eq!(caps(&status, set), CapSet::EMPTY, "{set}: {status}");
    }
}

/// Without NET_RAW no packet socket (what sniffed a registry password off the host's network);
/// `--cap-add` gives it back.
#[test]
fn no_packet_sockets_unless_net_raw_is_added() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    // busybox arping opens socket(AF_PACKET, SOCK_DGRAM); on lo it then gives up.
    let arping = "busybox arping -c 1 -w 1 -I lo 127.0.0.1";
    let out = run(&root, &[], arping);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("arping: socket: Operation not permitted"),
        "{}",
        text(&out.stderr)
    );
    for flag in ["NET_RAW", "cap_net_raw", "Net_Raw"] {
        let out = run(&root, &["--cap-add", flag], &format!("{arping}; {STATUS}"));
        let err = text(&out.stderr);
        assert!(!err.contains("socket"), "{flag}: {err}");
        assert!(err.contains("not ARPable"), "{flag}: {err}");
        let status = text(&out.stdout);
        assert!(
            caps(&status, "CapEff")
                .names()
                .contains(&"CAP_NET_RAW".to_string())
        );
    }
}

/// docker's policy: no user namespaces, mounts or keyrings without SYS_ADMIN, whatever the
/// capabilities say; `seccomp=unconfined` lifts it, `--cap-add SYS_ADMIN` opens those calls.
#[test]
fn seccomp_refuses_what_dockers_policy_refuses() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    // Creating a user namespace needs no capability: only seccomp stops it.
    let probe = "grep ^Seccomp: /proc/self/status; busybox unshare -U true && echo userns-made";
    let out = run(&root, &[], probe);
    assert_eq!(text(&out.stdout), "Seccomp:\t2\n", "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("unshare(0x10000000): Operation not permitted"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&root, &["--security-opt", "seccomp=unconfined"], probe);
    assert_eq!(text(&out.stdout), "Seccomp:\t0\nuserns-made\n");
    // The same policy, named.
    let out = run(&root, &["--security-opt", "seccomp=builtin"], probe);
    assert_eq!(text(&out.stdout), "Seccomp:\t2\n");

    // SYS_ADMIN brings mount and unshare back, still under the filter.
    let out = run(
        &root,
        &["--cap-add", "SYS_ADMIN"],
        "grep ^Seccomp: /proc/self/status; busybox unshare -U true && echo userns-made; \
         mkdir /m && busybox mount -t tmpfs t /m && echo mounted",
    );
    assert_eq!(
        text(&out.stdout),
        "Seccomp:\t2\nuserns-made\nmounted\n",
        "{}",
        text(&out.stderr)
    );
    // Without it, mount fails even before the capability check.
    let out = run(
        &root,
        &[],
        "mkdir /m; busybox mount -t tmpfs t /m || echo refused",
    );
    assert_eq!(text(&out.stdout), "refused\n");
}

#[test]
fn cap_drop_all_leaves_nothing() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let out = run(
        &root,
        &["--cap-drop", "ALL"],
        &format!("{STATUS}; touch /f; chown 1:1 /f || echo chown-refused"),
    );
    let status = text(&out.stdout);
    for set in ["CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(caps(&status, set), CapSet::EMPTY, "{set}");
    }
    assert!(status.ends_with("chown-refused\n"), "{status}");
    // Drop all, add one back (docker's rule); drops apply to the default set otherwise.
    let out = run(&root, &["--cap-drop", "all", "--cap-add", "CHOWN"], STATUS);
    assert_eq!(caps(&text(&out.stdout), "CapBnd").names(), ["CAP_CHOWN"]);
    let out = run(&root, &["--cap-drop", "chown,CAP_KILL"], STATUS);
    let names = caps(&text(&out.stdout), "CapBnd").names();
    assert_eq!(names.len(), PODMAN.len() - 2);
    assert!(!names.contains(&"CAP_CHOWN".to_string()));
}

#[test]
fn privileged_gets_everything_manifold_has() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let out = run(
        &root,
        &["--privileged", "--cap-drop", "ALL"],
        &format!(
            "{STATUS}; grep ' /sys ' /proc/mounts; mkdir /m && busybox mount -t tmpfs t /m && echo mounted; \
             grep -c . /proc/timer_list >/dev/null && echo timer_list-readable"
        ),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = text(&out.stdout);
    assert_eq!(caps(&status, "CapBnd"), Host::current().capabilities);
    assert_eq!(caps(&status, "CapEff"), Host::current().capabilities);
    assert_eq!(field(&status, "Seccomp"), "0");
    assert!(status.contains("sysfs /sys sysfs rw,"), "{status}");
    assert!(status.contains("\nmounted\n"), "{status}");
    assert!(status.ends_with("timer_list-readable\n"), "{status}");
    // Unprivileged: /sys read-only, /proc/timer_list masked.
    let out = run(
        &root,
        &[],
        "grep ' /sys ' /proc/mounts; grep -c . /proc/timer_list >/dev/null || echo timer_list-masked",
    );
    let got = text(&out.stdout);
    assert!(got.contains("sysfs /sys sysfs ro,"), "{got}");
    assert!(got.ends_with("timer_list-masked\n"), "{got}");
}

/// A setuid-root `su` (root's password empty) makes a non-root user root, unless
/// no-new-privileges is set. It is called by path: busybox sh would run its own `su` applet.
#[test]
fn no_new_privileges_stops_setuid() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    #[cfg(target_arch = "x86_64")]
    let arch = "amd64";
    #[cfg(target_arch = "aarch64")]
    let arch = "arm64";
    let busybox = fs::read(
        busybox_rootfs(arch, "tar.gz")
            .parent()
            .unwrap()
            .join("rootfs/bin/busybox"),
    )
    .unwrap();
    with_layers(
        &root,
        "busybox",
        &[RawTar::default()
            .entry(b'0', "bin/su", "", &busybox, 0o4755)
            .file(
                "etc/passwd",
                b"root::0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            )
            .finish()],
        "suid",
    );
    let su = |flags: &[&str]| {
        root.manifold()
            .args(["run", "--rm", "-u", "nobody"])
            .args(flags)
            .args([
                "suid",
                "sh",
                "-c",
                "grep NoNewPrivs /proc/self/status; /bin/su -c 'id -u' root",
            ])
            .output()
            .unwrap()
    };
    let out = su(&[]);
    assert_eq!(
        text(&out.stdout),
        "NoNewPrivs:\t0\n0\n",
        "{}",
        text(&out.stderr)
    );
    for flag in ["no-new-privileges", "no-new-privileges=true"] {
        let out = su(&["--security-opt", flag]);
        assert_eq!(
            text(&out.stdout),
            "NoNewPrivs:\t1\n",
            "{}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("must be suid"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = su(&["--security-opt", "no-new-privileges=false"]);
    assert_eq!(text(&out.stdout), "NoNewPrivs:\t0\n0\n");
}

/// `--security-opt seccomp=FILE` in docker's JSON format replaces the default policy.
#[test]
fn a_profile_file_replaces_the_default() {
    skip_unless!("root", "runc");
    let root = TestRoot::new();
    host_busybox(&root);
    let dir = root.scratch("profiles");
    let profile = dir.join("deny-mkdir.json");
    fs::write(
        &profile,
        r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
              {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
  "syscalls": [
    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
    {"names": ["chown", "fchownat", "lchown", "fchown"], "action": "SCMP_ACT_ERRNO",
     "excludes": {"caps": ["CAP_SYS_ADMIN"]}}
  ]
}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let probe = "mkdir /x || echo mkdir-refused; touch /f; chown 1 /f || echo chown-refused; \
                 busybox unshare -U true && echo userns-made";
    let out = run(&root, &["--security-opt", &opt], probe);
    assert_eq!(
        text(&out.stdout),
        "mkdir-refused\nchown-refused\nuserns-made\n",
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("Permission denied"));
    // Its conditions follow the container's capabilities too.
    let out = run(
        &root,
        &["--security-opt", &opt, "--cap-add", "SYS_ADMIN"],
        probe,
    );
    assert_eq!(text(&out.stdout), "mkdir-refused\nuserns-made\n");
}

/// Bad values: a clear error naming the value, a hint, status 125, and no container made.
#[test]
fn bad_security_flags_are_refused_before_anything_happens() {
    let root = TestRoot::new();
    let dir = root.scratch("bad");
    let junk = dir.join("junk.json");
    fs::write(&junk, r#"{"defaultAction": "SCMP_ACT_SOMETIMES"}"#).unwrap();
    let both = dir.join("both.json");
    fs::write(
        &both,
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}"#,
    )
    .unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["--cap-add".into(), "NET_WIZARD".into()],
        vec!["--cap-drop".into(), "chown,cap_bogus".into()],
        vec!["--security-opt".into(), "seccomp".into()],
        vec!["--security-opt".into(), "sandbox=tight".into()],
        vec!["--security-opt".into(), "apparmor=docker-default".into()],
        vec!["--security-opt".into(), "no-new-privileges=maybe".into()],
        vec![
            "--security-opt".into(),
            format!("seccomp={}", dir.join("missing.json").display()),
        ],
        vec![
            "--security-opt".into(),
            format!("seccomp={}", junk.display()),
        ],
        vec![
            "--security-opt".into(),
            format!("seccomp={}", both.display()),
        ],
    ];
    let mut transcript = String::new();
    for flags in &cases {
        let out = root
            .manifold()
            .args(["run", "--rm"])
            .args(flags)
            .args(["busybox", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(125), "{flags:?}");
        transcript.push_str(&format!(
            "$ run {}\n{}\n",
            flags.join(" "),
            text(&out.stderr)
        ));
    }
    // Nothing was made: not even the store's directories.
    assert!(!root.path().join("containers-v1").exists());
    root.insta_settings().bind(|| {
        insta::assert_snapshot!(transcript, @r#"
        $ run --cap-add NET_WIZARD
        error: unknown capability `NET_WIZARD`
        hint: capabilities are named as in capabilities(7), with or without `CAP_` (`NET_RAW`, `cap_sys_admin`), or `ALL`

        $ run --cap-drop chown,cap_bogus
        error: unknown capability `cap_bogus`
        hint: capabilities are named as in capabilities(7), with or without `CAP_` (`NET_RAW`, `cap_sys_admin`), or `ALL`

        $ run --security-opt seccomp
        error: invalid `--security-opt` `seccomp`
        hint: manifold knows `--security-opt seccomp=unconfined|builtin|FILE` and `--security-opt no-new-privileges[=true|false]`

        $ run --security-opt sandbox=tight
        error: invalid `--security-opt` `sandbox=tight`
        hint: manifold knows `--security-opt seccomp=unconfined|builtin|FILE` and `--security-opt no-new-privileges[=true|false]`

        $ run --security-opt apparmor=docker-default
        error: `--security-opt apparmor=docker-default` is not supported: manifold applies no AppArmor or SELinux policy
        hint: manifold knows `--security-opt seccomp=unconfined|builtin|FILE` and `--security-opt no-new-privileges[=true|false]`

        $ run --security-opt no-new-privileges=maybe
        error: invalid value `maybe` for `no-new-privileges`: expected true or false
        hint: write `no-new-privileges`, `no-new-privileges=true` or `no-new-privileges=false`

        $ run --security-opt seccomp=[SCRATCH]/bad/missing.json
        error: cannot read the seccomp profile [SCRATCH]/bad/missing.json
          caused by: No such file or directory (os error 2)
        hint: give a profile in docker's seccomp JSON format, or `seccomp=unconfined` to run without one

        $ run --security-opt seccomp=[SCRATCH]/bad/junk.json
        error: invalid seccomp profile [SCRATCH]/bad/junk.json
          caused by: unknown variant `SCMP_ACT_SOMETIMES`, expected one of `SCMP_ACT_KILL`, `SCMP_ACT_KILL_THREAD`, `SCMP_ACT_KILL_PROCESS`, `SCMP_ACT_TRAP`, `SCMP_ACT_ERRNO`, `SCMP_ACT_NOTIFY`, `SCMP_ACT_TRACE`, `SCMP_ACT_LOG`, `SCMP_ACT_ALLOW` at line 1 column 38
        hint: give a profile in docker's seccomp JSON format, or `seccomp=unconfined` to run without one

        $ run --security-opt seccomp=[SCRATCH]/bad/both.json
        error: invalid seccomp profile [SCRATCH]/bad/both.json
          caused by: a rule names its system calls with both `name` and `names`: use one
        hint: give a profile in docker's seccomp JSON format, or `seccomp=unconfined` to run without one
        "#);
    });
}

/// QEMU under docker's policy: the filter sees the emulator's own (host) system calls, which
/// the policy allows — including the threads and forks it makes — and still refuses what the
/// guest asks that docker refuses.
#[test]
fn emulated_platforms_run_under_the_default_policy() {
    skip_unless!("root", "runc", "qemu-aarch64-static");
    let _lease = BinfmtLease::shared();
    let root = TestRoot::new();
    let arches: &[(&str, &str)] = &[
        ("arm64", "linux/arm64"),
        ("armhf", "linux/arm/v7"),
        ("ppc64el", "linux/ppc64le"),
        ("s390x", "linux/s390x"),
        ("riscv64", "linux/riscv64"),
    ];
    multiarch(&root, "emulated", arches, &[]);
    for (debarch, platform) in arches {
        let out = root
            .manifold()
            .args([
                "run",
                "--rm",
                "--platform",
                platform,
                "emulated",
                "sh",
                "-c",
            ])
            .arg(
                "uname -m; grep ^Seccomp: /proc/self/status; sleep 0 & wait && echo forked; \
                 busybox unshare -U true || echo userns-refused",
            )
            .output()
            .unwrap();
        let want_machine = match *debarch {
            "arm64" => "aarch64",
            "armhf" => "armv7l",
            "ppc64el" => "ppc64le",
            other => other,
        };
        assert_eq!(
            text(&out.stdout),
            format!("{want_machine}\nSeccomp:\t2\nforked\nuserns-refused\n"),
            "{platform}: {}",
            text(&out.stderr)
        );
    }
}

/// RUN steps get the same confinement as `run`, native and emulated.
#[test]
fn run_steps_are_confined_like_containers() {
    skip_unless!("root", "runc", "qemu-aarch64-static");
    let _lease = BinfmtLease::shared();
    let root = TestRoot::new();
    multiarch(
        &root,
        "test/busybox:latest",
        &[("amd64", "linux/amd64"), ("arm64", "linux/arm64")],
        &[],
    );
    let ctx = root.scratch("ctx");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM test/busybox:latest\n\
         RUN grep -e ^CapBnd -e ^CapInh -e ^CapAmb -e ^Seccomp: /proc/self/status > /status; \
         busybox unshare -U true 2>/dev/null || echo userns-refused >> /status\n",
    )
    .unwrap();
    root.manifold()
        .args([
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "confined",
        ])
        .arg(&ctx)
        .assert()
        .success();
    for platform in ["linux/amd64", "linux/arm64"] {
        let out = root
            .manifold()
            .args([
                "run",
                "--rm",
                "--platform",
                platform,
                "confined",
                "cat",
                "/status",
            ])
            .output()
            .unwrap();
        let status = text(&out.stdout);
        let mut got = caps(&status, "CapBnd").names();
        got.sort();
        let mut want: Vec<String> = PODMAN.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "{platform}");
        assert_eq!(caps(&status, "CapInh"), CapSet::EMPTY);
        assert_eq!(caps(&status, "CapAmb"), CapSet::EMPTY);
        assert_eq!(field(&status, "Seccomp"), "2", "{platform}");
        assert!(status.ends_with("userns-refused\n"), "{platform}: {status}");
    }
}

#[test]
fn help_for_the_security_flags() {
    let root = TestRoot::new();
    let out = root.manifold().args(["run", "--help"]).output().unwrap();
    let help = text(&out.stdout);
    let start = help.find("      --cap-add").expect("--cap-add in the help");
    let end = help[start..]
        .find("      --runtime")
        .expect("--runtime after the security flags");
    insta::assert_snapshot!(&help[start..start + end], @r"
          --cap-add <CAP>
              Add a Linux capability (`NET_RAW`, `CAP_SYS_ADMIN`, any case; `ALL` for every one)

          --cap-drop <CAP>
              Drop a Linux capability (`ALL` drops every one but those added)

          --privileged
              Every capability, no seccomp filter, /proc and /sys unmasked and writable, every device
              allowed (host devices are not mounted)

          --security-opt <OPT>
              `seccomp=unconfined|builtin|FILE` (docker's profile JSON) or
              `no-new-privileges[=true|false]`
    ");
}
