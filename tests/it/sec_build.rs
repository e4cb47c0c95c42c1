//! Security regressions of `manifold build` (issue 9): ADD of archive bombs in bounded memory,
//! thousands of stages and ENV lines, `.dockerignore` bypasses through symlinks, and ADD of a
//! URL revalidated instead of cached by its name.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::harness::{COMMAND_TIMEOUT, TestRoot};

struct Built {
    ok: bool,
    stderr: String,
}

fn build(root: &TestRoot, ctx: &Path, args: &[&str]) -> Built {
    let out = root
        .manifold()
        .arg("build")
        .args(args)
        .arg(ctx)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap();
    Built {
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn build_ok(root: &TestRoot, ctx: &Path, args: &[&str]) -> String {
    let b = build(root, ctx, args);
    assert!(b.ok, "build failed:\n{}", b.stderr);
    b.stderr
}

/// `manifold build` as a child whose peak resident memory (KiB) is returned.
fn build_measured(root: &TestRoot, ctx: &Path, args: &[&str]) -> (Built, u64) {
    let log = root.scratch("logs").join("build.stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_manifold"))
        .env("DOCKER_CONFIG", root.docker_config())
        .env_remove("MANIFOLD_ROOT")
        .env_remove("SOURCE_DATE_EPOCH")
        .arg("--root")
        .arg(root.path())
        .args(["--progress", "none", "build"])
        .args(args)
        .arg(ctx)
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let measured = crate::harness::wait_measured(&mut child, COMMAND_TIMEOUT * 2);
    let built = Built {
        ok: measured.status.success(),
        stderr: fs::read_to_string(&log).unwrap(),
    };
    (built, measured.peak_rss_kib)
}

/// The layer blobs of the single-platform image `reference` (`docker.io/…:latest` form).
fn layer_blobs(root: &TestRoot, reference: &str) -> Vec<PathBuf> {
    let blobs = root.path().join("images/blobs/sha256");
    let index: Value =
        serde_json::from_slice(&fs::read(root.path().join("images/index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == reference)
        .unwrap_or_else(|| panic!("no {reference} in {index:#}"));
    let manifest: Value = serde_json::from_slice(
        &fs::read(blobs.join(&desc["digest"].as_str().unwrap()[7..])).unwrap(),
    )
    .unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| blobs.join(&l["digest"].as_str().unwrap()[7..]))
        .collect()
}

/// Every member of every layer: `path`, `path -> target` for links, `path=content` for
/// files up to 1 KiB and `path (N bytes)` for bigger ones (read without keeping them).
fn image_files(root: &TestRoot, reference: &str) -> Vec<String> {
    let mut out = Vec::new();
    for blob in layer_blobs(root, reference) {
        let (r, _) = manifold::archive::decompressed(fs::File::open(blob).unwrap()).unwrap();
        let mut a = tar::Archive::new(r);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let size = e.size();
            out.push(match e.header().entry_type() {
                tar::EntryType::Symlink => format!(
                    "{p} -> {}",
                    e.link_name().unwrap().unwrap().to_string_lossy()
                ),
                t if t.is_file() && size <= 1024 => {
                    let mut s = String::new();
                    e.read_to_string(&mut s).unwrap();
                    format!("{p}={}", s.trim_end())
                }
                t if t.is_file() => format!("{p} ({size} bytes)"),
                _ => p,
            });
        }
    }
    out
}

fn write_zstd(path: &Path, fill: impl FnOnce(&mut dyn Write)) {
    let mut z = zstd::stream::write::Encoder::new(fs::File::create(path).unwrap(), 1).unwrap();
    fill(&mut z);
    z.finish().unwrap();
}

fn header(path: &str, size: u64) -> [u8; 512] {
    let mut h = tar::Header::new_gnu();
    h.set_path(path).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    *h.as_bytes()
}

/// Two archive bombs a few hundred KiB in size: one member of 160 MiB of zeros, and 100,000
/// members of 4 KiB named alike. Both used to be read into memory whole.
#[test]
fn add_archive_bombs_keep_memory_bounded() {
    const BIG: u64 = 160 << 20;
    const MANY: usize = 100_000;
    let root = TestRoot::new();
    let ctx = root.scratch("bombs");
    write_zstd(&ctx.join("big.tar.zst"), |w| {
        w.write_all(&header("zeros", BIG)).unwrap();
        let block = vec![0u8; 1 << 20];
        for _ in 0..BIG >> 20 {
            w.write_all(&block).unwrap();
        }
        w.write_all(&[0u8; 1024]).unwrap();
    });
    write_zstd(&ctx.join("many.tar.zst"), |w| {
        let h = header("same", 4096);
        for _ in 0..MANY {
            w.write_all(&h).unwrap();
            w.write_all(&[0u8; 4096]).unwrap();
        }
        w.write_all(&[0u8; 1024]).unwrap();
    });
    let small = fs::metadata(ctx.join("big.tar.zst")).unwrap().len()
        + fs::metadata(ctx.join("many.tar.zst")).unwrap().len();
    assert!(small < 1 << 20, "the bombs are small: {small} bytes");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nADD big.tar.zst /big/\nADD many.tar.zst /many/\n",
    )
    .unwrap();
    let (built, peak_kib) =
        build_measured(&root, &ctx, &["--compression", "zstd", "-t", "sec/bombs"]);
    assert!(built.ok, "{}", built.stderr);
    eprintln!("peak RSS of the build: {peak_kib} KiB");
    assert!(
        peak_kib < 256 * 1024,
        "peak RSS {peak_kib} KiB for {} MiB of members",
        (BIG + MANY as u64 * 4096) >> 20
    );
    let files = image_files(&root, "docker.io/sec/bombs:latest");
    assert_eq!(
        files,
        vec![
            "big/".to_string(),
            format!("big/zeros ({BIG} bytes)"),
            "many/".to_string(),
            "many/same (4096 bytes)".to_string(),
        ],
        "one member per path"
    );
}

/// A member whose GNU long name is 4 MiB: refused with the archive named, no tag moved.
#[test]
fn add_archive_with_a_huge_header_is_refused() {
    let root = TestRoot::new();
    let ctx = root.scratch("longname");
    write_zstd(&ctx.join("long.tar.zst"), |w| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_size(4 << 20);
        h.set_cksum();
        w.write_all(h.as_bytes()).unwrap();
        w.write_all(&vec![b'a'; 4 << 20]).unwrap();
        w.write_all(&header("x", 0)).unwrap();
        w.write_all(&[0u8; 1024]).unwrap();
    });
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nADD long.tar.zst /\n").unwrap();
    let b = build(&root, &ctx, &["-t", "sec/long"]);
    assert!(!b.ok);
    assert!(
        b.stderr.contains("long.tar.zst") && b.stderr.contains("larger than 1048576 bytes"),
        "{}",
        b.stderr
    );
    let index = fs::read_to_string(root.path().join("images/index.json")).unwrap_or_default();
    assert!(!index.contains("sec/long"), "{index}");
}

/// 2,000 stages, each on the one before: planned and built without exhausting any stack.
#[test]
fn two_thousand_stages_build() {
    let root = TestRoot::new();
    let ctx = root.scratch("stages");
    let mut df = String::from("FROM scratch AS s0\nCOPY first /first\n");
    for i in 1..2000 {
        df.push_str(&format!("FROM s{} AS s{i}\n", i - 1));
    }
    df.push_str("LABEL last=yes\nCOPY --from=s0 /first /again\n");
    fs::write(ctx.join("Dockerfile"), df).unwrap();
    fs::write(ctx.join("first"), "1").unwrap();
    build_ok(&root, &ctx, &["-t", "sec/stages"]);
    assert_eq!(
        image_files(&root, "docker.io/sec/stages:latest"),
        vec!["first=1", "again=1"]
    );
}

/// 6,000 ENV lines: every variable in the image config, in order.
#[test]
fn six_thousand_env_lines() {
    let root = TestRoot::new();
    let ctx = root.scratch("env");
    let mut df = String::from("FROM scratch\n");
    for i in 0..6000 {
        df.push_str(&format!("ENV V{i}=value{i}\n"));
    }
    df.push_str("ENV V0=again\n");
    fs::write(ctx.join("Dockerfile"), df).unwrap();
    build_ok(&root, &ctx, &["-t", "sec/env"]);
    let out = root
        .manifold()
        .args(["inspect", "sec/env"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).unwrap();
    let v = if v.is_array() { v[0].clone() } else { v };
    let config = v.get("Config").or_else(|| v.get("config")).unwrap();
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(env.len(), 6000);
    assert_eq!(env[0], "V1=value1");
    assert_eq!(env[5998], "V5999=value5999");
    assert_eq!(
        env[5999], "V0=again",
        "a variable set again moves to the end"
    );
}

/// A context where `secret` is ignored, with links to it in every shape, and links out of
/// the context.
fn linked_context(root: &TestRoot) -> PathBuf {
    let ctx = root.scratch("linked");
    fs::create_dir_all(ctx.join("secret/public")).unwrap();
    fs::create_dir_all(ctx.join("sub")).unwrap();
    fs::write(ctx.join("secret/key"), "TOPSECRET").unwrap();
    fs::write(ctx.join("secret/public/cert"), "public").unwrap();
    fs::write(ctx.join(".dockerignore"), "secret\n!secret/public\n").unwrap();
    symlink("secret", ctx.join("alias")).unwrap();
    symlink("..", ctx.join("sub/up")).unwrap();
    symlink("alias", ctx.join("chain1")).unwrap();
    symlink("chain1", ctx.join("chain2")).unwrap();
    symlink("/secret", ctx.join("abs")).unwrap();
    symlink("secret/key", ctx.join("keylink")).unwrap();
    symlink("/etc", ctx.join("hostetc")).unwrap();
    symlink("../../../../../../../../../etc", ctx.join("uphost")).unwrap();
    ctx
}

#[test]
fn dockerignore_holds_through_symlinks() {
    let root = TestRoot::new();
    let ctx = linked_context(&root);
    let refused = [
        "alias/key",
        "sub/up/secret/key",
        "chain2/key",
        "abs/key",
        "keylink",
        "alias",
    ];
    for (i, src) in refused.iter().enumerate() {
        fs::write(
            ctx.join("Dockerfile"),
            format!("FROM scratch\nCOPY {src} /out/\n"),
        )
        .unwrap();
        let tag = format!("sec/link{i}");
        let b = build(&root, &ctx, &["-t", &tag]);
        assert!(!b.ok, "COPY {src} succeeded");
        assert!(
            b.stderr
                .contains(&format!("`{src}` leads through symlinks to `secret"))
                && b.stderr.contains("excluded by .dockerignore"),
            "COPY {src}: {}",
            b.stderr
        );
    }
    // Wildcards through the links match nothing that is ignored; the re-included part is
    // reachable; links out of the context find nothing of the host's.
    for src in [
        "alias/*",
        "sub/up/secret/*",
        "chain2/*",
        "*/key",
        "**/key",
        "hostetc/*",
        "uphost/host*",
    ] {
        fs::write(
            ctx.join("Dockerfile"),
            format!("FROM scratch\nCOPY {src} /out/\n"),
        )
        .unwrap();
        let b = build(&root, &ctx, &["-t", "sec/wild"]);
        assert!(!b.ok, "COPY {src} succeeded");
        assert!(
            b.stderr.contains("no file in the build context matches"),
            "COPY {src}: {}",
            b.stderr
        );
    }
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY alias/public/cert /cert\nCOPY . /all/\n",
    )
    .unwrap();
    build_ok(&root, &ctx, &["-t", "sec/links"]);
    let files = image_files(&root, "docker.io/sec/links:latest");
    assert!(files.contains(&"cert=public".to_string()), "{files:?}");
    // The whole context: links stay links, nothing of `secret` but the re-included part.
    for f in [
        "all/alias -> secret",
        "all/sub/up -> ..",
        "all/abs -> /secret",
        "all/hostetc -> /etc",
        "all/secret/public/cert=public",
    ] {
        assert!(files.contains(&f.to_string()), "{f} in {files:?}");
    }
    assert!(
        !files
            .iter()
            .any(|f| f.contains("TOPSECRET") || f.starts_with("all/secret/key")),
        "{files:?}"
    );
}

/// A hand-written HTTP server on loopback: the body it serves can change, it answers 304 to
/// an If-None-Match naming its current ETag, and it records what it was asked.
struct Server {
    port: u16,
    body: Arc<Mutex<(String, String)>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let body = Arc::new(Mutex::new((String::new(), String::new())));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (b, l) = (body.clone(), log.clone());
        std::thread::spawn(move || {
            for s in listener.incoming().take(100) {
                let Ok(mut s) = s else { continue };
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
                let (content, etag) = b.lock().unwrap().clone();
                let not_modified = head.contains(&format!("if-none-match: \"{etag}\""));
                let reply = if not_modified {
                    format!(
                        "HTTP/1.1 304 Not Modified\r\nETag: \"{etag}\"\r\nConnection: close\r\n\r\n"
                    )
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\nETag: \"{etag}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{content}",
                        content.len()
                    )
                };
                l.lock()
                    .unwrap()
                    .push(if not_modified { "304" } else { "200" }.to_string());
                let _ = s.write_all(reply.as_bytes());
            }
        });
        Server { port, body, log }
    }

    fn serve(&self, content: &str, etag: &str) {
        *self.body.lock().unwrap() = (content.to_string(), etag.to_string());
    }

    fn answers(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

#[test]
fn add_url_is_revalidated() {
    let root = TestRoot::new();
    let server = Server::start();
    let ctx = root.scratch("url");
    fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM scratch\nADD http://127.0.0.1:{}/data.txt /data.txt\nCOPY after /after\n",
            server.port
        ),
    )
    .unwrap();
    fs::write(ctx.join("after"), "after").unwrap();
    let tag = "docker.io/sec/url:latest";

    server.serve("first", "v1");
    let log = build_ok(&root, &ctx, &["-t", "sec/url"]);
    assert!(log.contains("(0 of 2 steps cached)"), "{log}");
    assert_eq!(server.answers(), vec!["200"]);
    assert!(image_files(&root, tag).contains(&"data.txt=first".to_string()));

    // Unchanged: the server is asked, answers 304, and both steps are cache hits.
    let log = build_ok(&root, &ctx, &["-t", "sec/url"]);
    assert!(log.contains("(2 of 2 steps cached)"), "{log}");
    assert_eq!(server.answers(), vec!["304"]);

    // Changed: the new body is in the image, and the step after it ran again too.
    server.serve("second", "v2");
    let log = build_ok(&root, &ctx, &["-t", "sec/url"]);
    assert!(log.contains("(0 of 2 steps cached)"), "{log}");
    assert_eq!(server.answers(), vec!["200"]);
    let files = image_files(&root, tag);
    assert!(files.contains(&"data.txt=second".to_string()), "{files:?}");
    assert!(!files.contains(&"data.txt=first".to_string()), "{files:?}");

    // A new ETag but the same body: downloaded again, the same digest, a cache hit.
    server.serve("second", "v3");
    let log = build_ok(&root, &ctx, &["-t", "sec/url"]);
    assert!(log.contains("(2 of 2 steps cached)"), "{log}");
    assert_eq!(server.answers(), vec!["200"]);
}
