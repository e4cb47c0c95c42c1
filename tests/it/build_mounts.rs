//! `RUN --mount=type=secret|ssh|bind` and the emulation report (issue 11, items 2 and 3):
//! secrets from files and variables that no file of the store, no object of the registry and
//! no line of the log ever holds; bind mounts from the context and from a stage, keyed by their
//! content and never part of the layer; an SSH agent answering inside the step; all of them
//! once on arm64 under QEMU; the steps that ran emulated, marked and summed up.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

use crate::harness::{TestRoot, manifold_snapshot, require};
use crate::local::{context, root_with_busybox};
use crate::registry_harness::{Auth, TestRegistry};

struct Built {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn build_with(root: &TestRoot, args: &[&str], ctx: &Path, env: &[(&str, &str)]) -> Built {
    let mut cmd = root.manifold();
    cmd.arg("build")
        .args(args)
        .arg(ctx)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("SSH_AUTH_SOCK");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Built {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn build_ok(root: &TestRoot, args: &[&str], ctx: &Path, env: &[(&str, &str)]) -> Built {
    let b = build_with(root, args, ctx, env);
    assert!(b.ok, "build failed:\n{}", b.stderr);
    b
}

/// The files of the last layer of `reference` for `arch`, as (path, content) pairs.
fn last_layer(root: &TestRoot, reference: &str, arch: &str) -> Vec<(String, String)> {
    layers(root, reference, arch).pop().unwrap()
}

fn layers(root: &TestRoot, reference: &str, arch: &str) -> Vec<Vec<(String, String)>> {
    crate::local::layer_entries(root, reference, arch)
        .into_iter()
        .map(|layer| {
            layer
                .into_iter()
                .map(|(p, content)| (p, content.unwrap_or_default()))
                .collect()
        })
        .collect()
}

fn file_in<'a>(layer: &'a [(String, String)], path: &str) -> Option<&'a str> {
    layer
        .iter()
        .find(|(p, _)| p == path)
        .map(|(_, c)| c.as_str())
}

/// The ways a secret could be written down: as it is, and in base64 (standard and URL-safe,
/// at each of the three alignments a longer base64 text can put it in).
fn needles(secret: &str) -> Vec<Vec<u8>> {
    let mut out = vec![secret.as_bytes().to_vec()];
    for pad in ["", "x", "xy"] {
        let text = format!("{pad}{secret}");
        for engine in [
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let enc = engine.encode(text.as_bytes());
            // The characters that depend only on the secret's own bytes.
            let skip = (pad.len() * 4).div_ceil(3) + 1;
            out.push(enc.as_bytes()[skip..enc.len() - 2].to_vec());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` (as stored, and decompressed when it is gzip or zstd) that holds
/// one of `needles`.
fn files_holding(dir: &Path, needles: &[Vec<u8>]) -> Vec<String> {
    let mut found = Vec::new();
    let mut work = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = work.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                work.push(p);
                continue;
            }
            if !m.is_file() {
                continue;
            }
            files += 1;
            let Ok(bytes) = fs::read(&p) else { continue };
            let mut texts = vec![bytes.clone()];
            if let Ok((mut r, _)) = manifold::archive::decompressed(fs::File::open(&p).unwrap()) {
                let mut plain = Vec::new();
                if r.read_to_end(&mut plain).is_ok() && plain != bytes {
                    texts.push(plain);
                }
            }
            if texts.iter().any(|t| needles.iter().any(|n| contains(t, n))) {
                found.push(p.display().to_string());
            }
        }
    }
    assert!(files > 0, "nothing to search under {}", dir.display());
    found
}

const SECRET_DOCKERFILE: &str = "FROM test/busybox:latest
RUN --mount=type=secret,id=tok --mount=type=secret,id=envtok,env=TOKEN,target=/run/t2,mode=0440,uid=7 \\
    sha256sum /run/secrets/tok | cut -d' ' -f1 > /tok.sha && \\
    printf %s \"$TOKEN\" | sha256sum | cut -d' ' -f1 > /env.sha && \\
    stat -c '%a %u' /run/secrets/tok /run/t2 > /modes && \\
    grep ' /run/secrets/tok ' /proc/mounts | cut -d' ' -f3 > /fstype && \\
    echo step saw a secret of $(wc -c < /run/secrets/tok) bytes
RUN --mount=type=secret,id=optional test ! -e /run/secrets/optional && echo optional absent > /optional
";

fn sha256_hex(s: &str) -> String {
    manifold::oci::Digest::sha256_of(s.as_bytes())
        .hex()
        .to_string()
}

#[test]
fn secrets_from_a_file_and_a_variable_never_stored_anywhere() {
    if !(require("root") && require("runc") && require("skopeo") && require("docker-registry")) {
        return;
    }
    let root = root_with_busybox();
    let registry = TestRegistry::start(Auth::Anonymous);
    let file_secret = format!("file-s3cret-{}-{}", std::process::id(), line!());
    let env_secret = format!("env-s3cret-{}-{}", std::process::id(), line!());
    let ctx = context(&root, "secrets", &[("Dockerfile", SECRET_DOCKERFILE)]);
    let secret_file = root.scratch("outside").join("tok");
    fs::write(&secret_file, &file_secret).unwrap();
    let name = format!("{}/test/secrets:1", registry.host());
    let secret_arg = format!("id=tok,src={}", secret_file.display());
    let args = [
        "--platform",
        "linux/amd64",
        "--secret",
        &secret_arg,
        "--secret",
        "id=envtok,env=MF_TEST_TOKEN",
        "-t",
        &name,
        "--push",
    ];
    let b = build_ok(&root, &args, &ctx, &[("MF_TEST_TOKEN", &env_secret)]);
    assert!(
        b.stderr
            .contains(&format!("step saw a secret of {} bytes", file_secret.len())),
        "{}",
        b.stderr
    );

    let layer = last_layer(&root, &name, "amd64");
    let first = &layers(&root, &name, "amd64");
    let run1 = &first[first.len() - 2];
    assert_eq!(
        file_in(run1, "tok.sha").map(str::trim),
        Some(sha256_hex(&file_secret).as_str())
    );
    assert_eq!(
        file_in(run1, "env.sha").map(str::trim),
        Some(sha256_hex(&env_secret).as_str())
    );
    assert_eq!(
        file_in(run1, "modes"),
        Some("400 0\n440 7\n"),
        "BuildKit's default mode and owner, and the mount's own"
    );
    let paths: Vec<&str> = run1.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["env.sha", "fstype", "modes", "tok.sha"],
        "neither the secrets nor their mount points are in the layer"
    );
    assert_eq!(
        file_in(run1, "fstype"),
        Some("tmpfs\n"),
        "the step reads its secret from memory, never from a disk"
    );
    assert_eq!(file_in(&layer, "optional"), Some("optional absent\n"));

    // Nothing holds either secret: no file of the store (blobs decompressed), no object of
    // the registry, no line of the log.
    let mut needles = needles(&file_secret);
    needles.extend(self::needles(&env_secret));
    assert_eq!(files_holding(root.path(), &needles), Vec::<String>::new());
    // (the search looks into compressed layers: the hash the step wrote is found there)
    assert!(!files_holding(root.path(), &[sha256_hex(&file_secret).into_bytes()]).is_empty());
    assert_eq!(
        files_holding(&registry.storage(), &needles),
        Vec::<String>::new()
    );
    for text in [&b.stdout, &b.stderr] {
        assert!(
            !needles.iter().any(|n| contains(text.as_bytes(), n)),
            "{text}"
        );
    }

    // BuildKit's cache rule: a secret's content is not part of the key, whether it was given is.
    fs::write(&secret_file, "another value").unwrap();
    let again = build_ok(
        &root,
        &args[..6],
        &ctx,
        &[("MF_TEST_TOKEN", "another value too")],
    );
    assert_eq!(
        again.stderr.matches("CACHED").count(),
        2,
        "{}",
        again.stderr
    );
    let without = build_with(&root, &["--platform", "linux/amd64"], &ctx, &[]);
    assert!(
        !without.ok,
        "the first RUN reads the secret: it runs again and fails"
    );
    assert!(
        without.stderr.contains("/run/secrets/tok"),
        "{}",
        without.stderr
    );
}

#[test]
fn a_required_secret_that_was_not_given_names_its_id_and_the_flag() {
    if !(require("root") && require("runc")) {
        return;
    }
    let root = root_with_busybox();
    let ctx = context(
        &root,
        "required",
        &[(
            "Dockerfile",
            "FROM test/busybox:latest\nRUN --mount=type=secret,id=npmrc,required=true cat /run/secrets/npmrc\n",
        )],
    );
    let mut cmd = root.manifold();
    cmd.args(["build", "--platform", "linux/amd64"])
        .arg(&ctx)
        .env_remove("NPM_TOKEN");
    manifold_snapshot!(root.insta_settings(), &mut cmd, @r"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    #1 [linux/amd64 stage-0 1/1] RUN --mount=type=secret,id=npmrc,required=true cat /run/secrets/npmrc
    #1 ERROR: secret `npmrc` is required and was not given
    error: Dockerfile:2: [linux/amd64 stage-0] RUN --mount=type=secret,id=npmrc,required=true cat /run/secrets/npmrc
      caused by: secret `npmrc` is required and was not given
    hint: pass it: `--secret id=npmrc,src=FILE` or `--secret id=npmrc,env=VARIABLE` (for `manifold bake`: the target's `secrets`)
    ");
    // given as a variable that is not set: said so
    let mut cmd = root.manifold();
    cmd.args([
        "build",
        "--platform",
        "linux/amd64",
        "--secret",
        "id=npmrc,env=NPM_TOKEN",
    ])
    .arg(&ctx)
    .env_remove("NPM_TOKEN");
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "caused by: secret `npmrc` is required and was not given (`NPM_TOKEN`, which it was to come from, is not set)"
        ),
        "{stderr}"
    );
}

const BIND_DOCKERFILE: &str = "FROM test/busybox:latest AS tools
RUN mkdir -p /out && echo made in a stage > /out/made && ln -s made /out/link
FROM test/busybox:latest
RUN --mount=target=/src --mount=type=bind,from=tools,source=/out/link,target=/made \\
    --mount=type=bind,source=sub,target=/sub,rw \\
    cat /src/input /made > /seen && ls -A /src > /listing && \\
    echo scribble > /sub/scribble && ls /sub > /sub-listing
";

#[test]
fn bind_mounts_from_the_context_and_a_stage_are_keyed_by_content_and_never_in_the_layer() {
    if !(require("root") && require("runc") && require("skopeo")) {
        return;
    }
    let root = root_with_busybox();
    let ctx = context(
        &root,
        "binds",
        &[
            ("Dockerfile", BIND_DOCKERFILE),
            ("input", "from the context\n"),
            (".dockerignore", "secret.env\nsub/ignored\n"),
            ("secret.env", "never bound"),
            ("sub/kept", "kept"),
            ("sub/ignored", "ignored"),
        ],
    );
    let args = ["--platform", "linux/amd64", "-t", "test/binds:1"];
    let first = build_ok(&root, &args, &ctx, &[]);
    let layer = last_layer(&root, "docker.io/test/binds:1", "amd64");
    let paths: Vec<&str> = layer.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["listing", "seen", "sub-listing"],
        "nothing bound, written through a rw bind, or made as a mount point is in the layer: {}",
        first.stderr
    );
    assert_eq!(
        file_in(&layer, "seen"),
        Some("from the context\nmade in a stage\n")
    );
    assert_eq!(
        file_in(&layer, "listing"),
        Some(".dockerignore\nDockerfile\ninput\nsub\n"),
        ".dockerignore applies to what a bind shows"
    );
    assert_eq!(file_in(&layer, "sub-listing"), Some("kept\nscribble\n"));
    assert!(
        !ctx.join("sub/scribble").exists(),
        "a rw bind's writes are discarded, never written to the context"
    );

    // The key: unchanged content (an ignored file changed) → cached; changed content → runs.
    fs::write(ctx.join("secret.env"), "changed, and still ignored").unwrap();
    fs::write(ctx.join("sub/ignored"), "changed, and still ignored").unwrap();
    let again = build_ok(&root, &args, &ctx, &[]);
    assert_eq!(
        again.stderr.matches("CACHED").count(),
        2,
        "{}",
        again.stderr
    );
    fs::write(ctx.join("input"), "changed\n").unwrap();
    let changed = build_ok(&root, &args, &ctx, &[]);
    assert_eq!(
        changed.stderr.matches("CACHED").count(),
        1,
        "only the RUN that binds the context runs again: {}",
        changed.stderr
    );
    let layer = last_layer(&root, "docker.io/test/binds:1", "amd64");
    assert_eq!(file_in(&layer, "seen"), Some("changed\nmade in a stage\n"));
    // the stage's content changes: the step runs again
    let df = BIND_DOCKERFILE.replace("made in a stage", "made again");
    fs::write(ctx.join("Dockerfile"), df).unwrap();
    build_ok(&root, &args, &ctx, &[]);
    let layer = last_layer(&root, "docker.io/test/binds:1", "amd64");
    assert_eq!(file_in(&layer, "seen"), Some("changed\nmade again\n"));
    // a source the stage does not have
    fs::write(
        ctx.join("Dockerfile"),
        "FROM test/busybox:latest AS tools\nFROM test/busybox:latest\nRUN --mount=from=tools,source=/nope,target=/x true\n",
    )
    .unwrap();
    let missing = build_with(&root, &args, &ctx, &[]);
    assert!(!missing.ok);
    assert!(
        missing
            .stderr
            .contains("caused by: RUN --mount=type=bind: `/nope` is not in `tools`"),
        "{}",
        missing.stderr
    );
    // from an image: its filesystem for the stage's platform
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch AS empty\nFROM test/busybox:latest\nRUN --mount=from=test/busybox:latest,source=/bin,target=/img \\\n    --mount=from=empty,target=/none ls /none > /none-listing && ls /img > /img-listing\n",
    )
    .unwrap();
    build_ok(&root, &args, &ctx, &[]);
    let layer = last_layer(&root, "docker.io/test/binds:1", "amd64");
    let listing = file_in(&layer, "img-listing").unwrap();
    assert!(listing.lines().any(|l| l == "busybox"), "{listing}");
    assert_eq!(
        file_in(&layer, "none-listing"),
        Some(""),
        "a stage of no layers binds empty"
    );
    assert_eq!(
        layer.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        ["img-listing", "none-listing"]
    );
}

/// A key pair made for a test (no passphrase), and its fingerprint as `ssh-add -l` shows it.
fn ssh_key(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("mf-build-mounts-{name}"))
        .arg("-f")
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    let line = String::from_utf8(out.stdout).unwrap();
    let fingerprint = line.split_whitespace().nth(1).unwrap().to_string();
    (key, fingerprint)
}

/// An `ssh-agent` of the test's own holding `key`; killed when dropped.
struct TestAgent {
    child: std::process::Child,
    socket: PathBuf,
}

impl TestAgent {
    fn start(dir: &Path, key: &Path) -> TestAgent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let agent = TestAgent { child, socket };
        // The socket exists from bind(); connections are accepted only once it listens.
        for _ in 0..500 {
            if std::os::unix::net::UnixStream::connect(&agent.socket).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let added = Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .status()
            .unwrap();
        assert!(added.success());
        agent
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host's `ssh-add` and the libraries it loads, under `dir` at their own paths: the step
/// runs it with the dynamic loader (`/tools/lib64/ld-linux-x86-64.so.2 --library-path …`).
fn host_ssh_add(dir: &Path) -> (String, String) {
    let ssh_add = fs::canonicalize(
        String::from_utf8(
            Command::new("which")
                .arg("ssh-add")
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim(),
    )
    .unwrap();
    let ldd = Command::new("ldd").arg(&ssh_add).output().unwrap();
    let mut loader = None;
    let mut lib_dirs: Vec<String> = Vec::new();
    let mut files = vec![ssh_add.clone()];
    for line in String::from_utf8(ldd.stdout).unwrap().lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        let Some(path) = path else { continue };
        if line.contains("ld-linux") {
            loader = Some(path.clone());
        } else if let Some(parent) = path.parent() {
            let parent = parent.display().to_string();
            if !lib_dirs.contains(&parent) {
                lib_dirs.push(parent);
            }
        }
        files.push(path);
    }
    for f in &files {
        let to = dir.join(f.strip_prefix("/").unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(f, &to).unwrap();
    }
    let libs: Vec<String> = lib_dirs.iter().map(|d| format!("/tools{d}")).collect();
    let command = format!(
        "/tools{} --library-path {} /tools{}",
        loader.expect("a dynamic loader").display(),
        libs.join(":"),
        ssh_add.display()
    );
    (command, ssh_add.display().to_string())
}

#[test]
fn ssh_agents_answer_inside_the_step_and_never_reach_the_layer() {
    if !(require("root") && require("runc") && require("skopeo") && require("ssh-agent")) {
        return;
    }
    let root = root_with_busybox();
    let keys = root.scratch("keys");
    let (key, fingerprint) = ssh_key(&keys, "build");
    let (deploy_key, deploy_fingerprint) = ssh_key(&keys, "deploy");
    let ctx = root.scratch("ssh");
    let (ssh_add, _) = host_ssh_add(&ctx.join("tools"));
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM test/busybox:latest
RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh \\
    {ssh_add} -l > /default-keys && echo \"$SSH_AUTH_SOCK\" > /sock
RUN --mount=type=bind,source=tools,target=/tools \\
    --mount=type=ssh,id=deploy,target=/root/agent.sock,mode=0666,required=true \\
    SSH_AUTH_SOCK=/root/agent.sock {ssh_add} -l > /deploy-keys && stat -c %a /root/agent.sock > /deploy-mode
"
        ),
    )
    .unwrap();

    // `default=KEY`: manifold's own agent holds the key; `deploy=SOCKET`: the user's agent.
    let agent = TestAgent::start(&keys, &deploy_key);
    let default_arg = format!("default={}", key.display());
    let deploy_arg = format!("deploy={}", agent.socket.display());
    let args = [
        "--platform",
        "linux/amd64",
        "--ssh",
        &default_arg,
        "--ssh",
        &deploy_arg,
        "-t",
        "test/ssh:1",
    ];
    let b = build_ok(&root, &args, &ctx, &[]);
    let all = layers(&root, "docker.io/test/ssh:1", "amd64");
    let (first, second) = (&all[all.len() - 2], &all[all.len() - 1]);
    let paths = |l: &[(String, String)]| l.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(
        paths(first),
        ["default-keys", "sock"],
        "no socket, mount point or bound file is in the layer: {}",
        b.stderr
    );
    assert_eq!(paths(second), ["deploy-keys", "deploy-mode"]);
    let listed = file_in(first, "default-keys").unwrap();
    assert!(
        listed.contains(&fingerprint) && listed.contains("mf-build-mounts-build"),
        "the agent --ssh default=KEY started holds the key: {listed}"
    );
    assert!(!listed.contains(&deploy_fingerprint));
    assert_eq!(
        file_in(first, "sock"),
        Some("/run/buildkit/ssh_agent.0\n"),
        "SSH_AUTH_SOCK names BuildKit's default target"
    );
    let listed = file_in(second, "deploy-keys").unwrap();
    assert!(
        listed.contains(&deploy_fingerprint),
        "the user's agent answers through the step's own socket: {listed}"
    );
    assert_eq!(file_in(second, "deploy-mode"), Some("666\n"));
    let host_paths = [
        agent.socket.display().to_string(),
        key.display().to_string(),
    ];
    assert!(
        files_holding(
            &root.path().join("images"),
            &host_paths
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect::<Vec<_>>()
        )
        .is_empty(),
        "neither the host's socket nor the key file is named in the store's images"
    );
    assert!(
        fs::read_dir(root.path().join("tmp-v1"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "the step's sockets are gone with it"
    );

    // `default` alone: the agent of SSH_AUTH_SOCK.
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM test/busybox:latest
RUN --mount=type=bind,source=tools,target=/tools --mount=type=ssh {ssh_add} -l > /keys
"
        ),
    )
    .unwrap();
    let sock = agent.socket.display().to_string();
    build_ok(
        &root,
        &[
            "--platform",
            "linux/amd64",
            "--ssh",
            "default",
            "-t",
            "test/ssh:2",
        ],
        &ctx,
        &[("SSH_AUTH_SOCK", &sock)],
    );
    let layer = last_layer(&root, "docker.io/test/ssh:2", "amd64");
    assert!(
        file_in(&layer, "keys")
            .unwrap()
            .contains(&deploy_fingerprint)
    );

    // `default` without SSH_AUTH_SOCK: said before anything builds, with what to do.
    let mut cmd = root.manifold();
    cmd.args(["build", "--platform", "linux/amd64", "--ssh", "default"])
        .arg(&ctx)
        .env_remove("SSH_AUTH_SOCK");
    manifold_snapshot!(root.insta_settings(), &mut cmd, @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: --ssh default: SSH_AUTH_SOCK is not set, and no socket or key file was named
    hint: start an agent (`eval $(ssh-agent)` and `ssh-add`), or name a key file: `--ssh default=$HOME/.ssh/id_ed25519`
    ");
    // a required agent that was not given
    fs::write(
        ctx.join("Dockerfile"),
        "FROM test/busybox:latest\nRUN --mount=type=ssh,id=deploy,required=true true\n",
    )
    .unwrap();
    let mut cmd = root.manifold();
    cmd.args(["build", "--platform", "linux/amd64"])
        .arg(&ctx)
        .env_remove("SSH_AUTH_SOCK");
    manifold_snapshot!(root.insta_settings(), &mut cmd, @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    #1 [linux/amd64 stage-0 1/1] RUN --mount=type=ssh,id=deploy,required=true true
    #1 ERROR: ssh agent `deploy` is required and was not given
    error: Dockerfile:2: [linux/amd64 stage-0] RUN --mount=type=ssh,id=deploy,required=true true
      caused by: ssh agent `deploy` is required and was not given
    hint: pass it: `--ssh deploy` (the agent of SSH_AUTH_SOCK) or `--ssh deploy=KEY_FILE` (for `manifold bake`: the target's `ssh`)
    ");
}

#[test]
fn under_qemu_secrets_binds_and_agents_work_and_the_emulated_steps_are_marked_and_summed() {
    if !(require("root") && require("runc") && require("skopeo") && require("ssh-agent")) {
        return;
    }
    // RUN for linux/arm64 goes through QEMU: hold binfmt_misc against the binfmt tests.
    let _binfmt = crate::binfmt::BinfmtLease::shared();
    let root = root_with_busybox();
    let secret = format!("arm-s3cret-{}", std::process::id());
    let ctx = context(
        &root,
        "emulated",
        &[
            (
                "Dockerfile",
                "FROM test/busybox:latest
RUN --mount=type=secret,id=tok --mount=target=/in,source=input --mount=type=ssh \\
    sha256sum /run/secrets/tok | cut -c1-64 > /tok.sha && cat /in > /seen && \\
    test -S $SSH_AUTH_SOCK && uname -m > /arch
",
            ),
            ("input", "bound under QEMU\n"),
        ],
    );
    let keys = root.scratch("keys");
    let (key, _) = ssh_key(&keys, "arm");
    let secret_file = keys.join("tok");
    fs::write(&secret_file, &secret).unwrap();
    let secret_arg = format!("id=tok,src={}", secret_file.display());
    let ssh_arg = format!("default={}", key.display());
    let args = [
        "build",
        "--platform",
        "linux/arm64",
        "--secret",
        &secret_arg,
        "--ssh",
        &ssh_arg,
        "-t",
        "test/emulated:1",
    ];
    let mut cmd = root.manifold();
    cmd.args(args).arg(&ctx).env_remove("SOURCE_DATE_EPOCH");
    let out = manifold_snapshot!(root.insta_settings(), &mut cmd, @r#"
    success: true
    exit_code: 0
    ----- stdout -----

    ----- stderr -----
    #1 [linux/arm64/v8 stage-0 1/1] RUN --mount=type=secret,id=tok --mount=target=/in,source=input --mount=type=ssh     sha256sum /run/secrets/tok | cut -c1-64 > /tok.sha && cat /in > /seen &&     test -S $SSH_AUTH_SOCK && uname -m > /arch
    #1 EMULATED linux/arm64/v8 through qemu-aarch64
    #1 DONE [DURATION] (emulated)
    writing image sha256:[DIGEST] (0 of 1 steps cached)
    emulation: linux/arm64/v8 ran 1 RUN step under QEMU in [DURATION] (100% of the time steps took)
    hint: most of the build ran under QEMU; a stage `FROM --platform=$BUILDPLATFORM` that compiles for `$TARGETARCH` runs natively, and the target's stage copies its result (README: "Cross-compiling")
    naming to test/emulated:1
    "#);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(&secret));
    let layer = last_layer(&root, "docker.io/test/emulated:1", "arm64");
    assert_eq!(
        layer.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        ["arch", "seen", "tok.sha"]
    );
    assert_eq!(file_in(&layer, "arch"), Some("aarch64\n"));
    assert_eq!(file_in(&layer, "seen"), Some("bound under QEMU\n"));
    assert_eq!(
        file_in(&layer, "tok.sha").map(str::trim),
        Some(sha256_hex(&secret).as_str())
    );
    assert_eq!(
        files_holding(root.path(), &needles(&secret)),
        Vec::<String>::new()
    );

    // Cached: nothing ran, nothing under QEMU.
    let again = root.manifold().args(args).arg(&ctx).output().unwrap();
    let again = String::from_utf8_lossy(&again.stderr);
    assert!(again.contains("#1 CACHED"), "{again}");
    assert!(
        !again.contains("EMULATED") && !again.contains("emulation:"),
        "{again}"
    );

    // Two platforms: only arm64's RUN is marked and summed.
    fs::write(
        ctx.join("Dockerfile"),
        "FROM test/busybox:latest\nRUN uname -m > /arch\n",
    )
    .unwrap();
    let both = build_ok(
        &root,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "test/emulated:2",
        ],
        &ctx,
        &[],
    );
    let marked: Vec<&str> = both
        .stderr
        .lines()
        .filter(|l| {
            l.contains("EMULATED") || l.contains("(emulated)") || l.starts_with("emulation:")
        })
        .collect();
    assert_eq!(marked.len(), 3, "{}", both.stderr);
    assert!(
        marked[0].ends_with(" EMULATED linux/arm64/v8 through qemu-aarch64")
            && marked[1].ends_with("s (emulated)")
            && marked[2].starts_with("emulation: linux/arm64/v8 ran 1 RUN step under QEMU in "),
        "{}",
        both.stderr
    );
    assert!(
        !both.stderr.contains("linux/amd64 through"),
        "{}",
        both.stderr
    );

    // The cross-compilation path (README: "Cross-compiling"): the stage that runs is the
    // build platform's, for every target; nothing is emulated.
    fs::write(ctx.join("Dockerfile"), CROSS_COMPILING_DOCKERFILE).unwrap();
    let cross = build_ok(
        &root,
        &["--platform", "linux/arm64", "-t", "test/emulated:3"],
        &ctx,
        &[],
    );
    assert!(
        !cross.stderr.contains("EMULATED")
            && !cross.stderr.contains("emulation:")
            && !cross.stderr.contains("hint:"),
        "{}",
        cross.stderr
    );
    let layer = last_layer(&root, "docker.io/test/emulated:3", "arm64");
    assert_eq!(file_in(&layer, "app"), Some("built on x86_64 for arm64\n"));
}

/// README's "Cross-compiling" example, with busybox for a compiler.
const CROSS_COMPILING_DOCKERFILE: &str =
    "FROM --platform=$BUILDPLATFORM test/busybox:latest AS build
ARG TARGETARCH
RUN echo \"built on $(uname -m) for $TARGETARCH\" > /app
FROM test/busybox:latest
COPY --from=build /app /app
";

#[test]
fn bake_targets_take_secrets_and_agents_relative_to_the_bake_file() {
    if !(require("root") && require("runc") && require("skopeo") && require("ssh-agent")) {
        return;
    }
    let root = root_with_busybox();
    let secret = format!("bake-s3cret-{}", std::process::id());
    let dir = context(
        &root,
        "bake",
        &[
            (
                "Dockerfile",
                "FROM test/busybox:latest
RUN --mount=type=secret,id=tok,required=true --mount=type=ssh,required=true \\
    sha256sum /run/secrets/tok | cut -c1-64 > /tok.sha && test -S $SSH_AUTH_SOCK && echo agent > /ssh
",
            ),
            ("tok.txt", &secret),
            (
                "manifold.yaml",
                "targets:\n  app:\n    platforms: [linux/amd64]\n    tags: [test/bake-secrets:1]\n    secrets: [\"id=tok,src=tok.txt\"]\n    ssh: [default=keys/app]\n",
            ),
        ],
    );
    fs::create_dir(dir.join("keys")).unwrap();
    ssh_key(&dir.join("keys"), "app");
    let out = root
        .manifold()
        .arg("bake")
        .current_dir(root.path())
        .arg("-f")
        .arg(dir.join("manifold.yaml"))
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(&secret));
    let layer = last_layer(&root, "docker.io/test/bake-secrets:1", "amd64");
    assert_eq!(
        file_in(&layer, "tok.sha").map(str::trim),
        Some(sha256_hex(&secret).as_str())
    );
    assert_eq!(file_in(&layer, "ssh"), Some("agent\n"));
    // --print shows where a secret comes from, never its value
    let printed = root
        .manifold()
        .args(["bake", "--print", "-f"])
        .arg(dir.join("manifold.yaml"))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("id=tok,src=tok.txt"), "{printed}");
    assert!(!printed.contains(&secret));
}

#[test]
fn bad_secret_and_ssh_flags_are_named_before_anything_builds() {
    let root = root_with_busybox();
    let ctx = context(
        &root,
        "flags",
        &[("Dockerfile", "FROM test/busybox:latest\nRUN true\n")],
    );
    let index = root.path().join("images/index.json");
    let before = fs::read(&index).unwrap();
    let missing = root.scratch("keys").join("missing");
    let missing = missing.display().to_string();
    let mut all = String::new();
    for flags in [
        vec!["--secret", "type=bogus,id=tok"],
        vec!["--secret", "id=tok,src=/etc/hostname,mode=0400"],
        vec!["--secret", &format!("id=tok,src={missing}")],
        vec!["--ssh", ",x"],
        vec!["--ssh", &format!("default={missing}")],
    ] {
        let mut cmd = root.manifold();
        cmd.args(["build", "--platform", "linux/amd64"])
            .args(&flags)
            .arg(&ctx)
            .env_remove("SSH_AUTH_SOCK");
        let (text, _) = crate::harness::run_and_format(&mut cmd);
        all.push_str(&format!("$ {}\n{text}\n", flags.join(" ")));
        assert_eq!(
            fs::read(&index).unwrap(),
            before,
            "{flags:?}: the store is as it was"
        );
    }
    root.insta_settings()
        .bind(|| insta::assert_snapshot!(all, @"
        $ --secret type=bogus,id=tok
        success: false
        exit_code: 2
        ----- stdout -----

        ----- stderr -----
        error: invalid value 'type=bogus,id=tok' for '--secret <SPEC>': invalid --secret `type=bogus,id=tok`: unknown type `bogus`: expected file or env

        For more information, try '--help'.

        $ --secret id=tok,src=/etc/hostname,mode=0400
        success: false
        exit_code: 2
        ----- stdout -----

        ----- stderr -----
        error: invalid value 'id=tok,src=/etc/hostname,mode=0400' for '--secret <SPEC>': invalid --secret `id=tok,src=/etc/hostname,mode=0400`: unknown key `mode`: expected id, type, src or env

        For more information, try '--help'.

        $ --secret id=tok,src=[SCRATCH]/keys/missing
        success: false
        exit_code: 125
        ----- stdout -----

        ----- stderr -----
        error: cannot read the file `[SCRATCH]/keys/missing` of secret `tok`
          caused by: No such file or directory (os error 2)

        $ --ssh ,x
        success: false
        exit_code: 2
        ----- stdout -----

        ----- stderr -----
        error: invalid value ',x' for '--ssh <SPEC>': invalid --ssh `,x`: it needs an id

        For more information, try '--help'.

        $ --ssh default=[SCRATCH]/keys/missing
        success: false
        exit_code: 125
        ----- stdout -----

        ----- stderr -----
        error: --ssh default: `[SCRATCH]/keys/missing` is neither a socket nor a readable key file
          caused by: No such file or directory (os error 2)
        "));
}
