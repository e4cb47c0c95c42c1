use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use super::*;
use crate::builder::tree::TreeEntry;
use crate::dockerfile::plan::CopyFrom;

struct Fixture {
    _dir: tempfile::TempDir,
    store: crate::store::Transaction,
    ctx: Context,
    tmp: std::path::PathBuf,
    ctx_root: std::path::PathBuf,
}

fn fixture(ignore: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("root"))
        .unwrap()
        .begin()
        .unwrap();
    let root = dir.path().join("ctx");
    fs::create_dir_all(root.join("src/sub")).unwrap();
    fs::write(root.join("a.txt"), "a").unwrap();
    fs::write(root.join("b.txt"), "b").unwrap();
    fs::write(root.join("src/main.c"), "main").unwrap();
    fs::write(root.join("src/sub/x.c"), "x").unwrap();
    fs::set_permissions(root.join("src/main.c"), fs::Permissions::from_mode(0o700)).unwrap();
    symlink("main.c", root.join("src/link")).unwrap();
    let ctx = Context::dir(&root, Ignore::parse(ignore).unwrap());
    let tmp = dir.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    Fixture {
        _dir: dir,
        store,
        ctx,
        tmp,
        ctx_root: root,
    }
}

fn op(sources: &[&str], dest: &str) -> CopyOp {
    CopyOp {
        add: false,
        from: CopyFrom::Context,
        sources: sources
            .iter()
            .map(|s| CopySrc::Path(s.to_string()))
            .collect(),
        dest: dest.into(),
        chown: None,
        chmod: None,
        exclude: vec![],
        checksum: None,
        keep_git_dir: false,
    }
}

fn no_download(u: &str) -> Result<std::path::PathBuf, super::FetchError> {
    Err(super::FetchError::Scheme(format!(
        "{u} (no download in these tests)"
    )))
}

fn base_tree() -> Tree {
    let e = |path: &str, kind: EntryKind| TreeEntry {
        path: path.into(),
        kind,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        link: None,
    };
    let mut link = e("srv", EntryKind::Symlink);
    link.link = Some("/var/srv".into());
    let mut t = Tree::default();
    t.push(
        crate::oci::Descriptor::of("x", b"base"),
        vec![
            e("etc", EntryKind::Dir),
            e("var", EntryKind::Dir),
            e("var/srv", EntryKind::Dir),
            link,
            e("opt", EntryKind::Dir),
        ],
    );
    t
}

fn run(f: &Fixture, op: &CopyOp, tree: &Tree) -> Result<Vec<Entry>, String> {
    let c = contents(f, op, tree).map_err(|e| e.to_string())?;
    assert_eq!(c.unpacks, vec![]);
    Ok(c.entries)
}

fn contents(f: &Fixture, op: &CopyOp, tree: &Tree) -> Result<Contents, super::CopyError> {
    let env = CopyEnv {
        store: &f.store,
        dest_tree: tree,
        owner: None,
        now: 42,
        tmp: &f.tmp,
        download: &no_download,
    };
    entries(op, &Source::Context(&f.ctx), &env)
}

fn paths(entries: &[Entry]) -> Vec<String> {
    let mut v: Vec<String> = entries
        .iter()
        .map(|e| match &e.kind {
            Kind::Dir => format!("{}/", e.path),
            Kind::Symlink(t) => format!("{} -> {t}", e.path),
            _ => e.path.clone(),
        })
        .collect();
    v.sort();
    v
}

#[test]
fn file_to_file_and_into_directories() {
    let f = fixture("");
    let t = base_tree();
    assert_eq!(
        paths(&run(&f, &op(&["a.txt"], "/new/name"), &t).unwrap()),
        vec!["new/", "new/name"]
    );
    assert_eq!(
        paths(&run(&f, &op(&["a.txt"], "/opt"), &t).unwrap()),
        vec!["opt/a.txt"],
        "existing dir"
    );
    assert_eq!(
        paths(&run(&f, &op(&["a.txt"], "/x/"), &t).unwrap()),
        vec!["x/", "x/a.txt"]
    );
    assert_eq!(
        paths(&run(&f, &op(&["*.txt"], "/opt"), &t).unwrap()),
        vec!["opt/a.txt", "opt/b.txt"]
    );
    assert_eq!(
        paths(&run(&f, &op(&["a.txt"], "/srv/"), &t).unwrap()),
        vec!["var/srv/a.txt"],
        "symlinked dest"
    );
}

#[test]
fn directories_copy_their_contents() {
    let f = fixture("");
    let t = base_tree();
    let out = run(&f, &op(&["src"], "/app"), &t).unwrap();
    assert_eq!(
        paths(&out),
        vec![
            "app/",
            "app/link -> main.c",
            "app/main.c",
            "app/sub/",
            "app/sub/x.c"
        ]
    );
    let main = out.iter().find(|e| e.path == "app/main.c").unwrap();
    assert_eq!(main.mode, 0o700, "modes are kept");
    assert_eq!((main.uid, main.gid), (0, 0));
    let out = run(&f, &op(&["src/"], "/opt/"), &t).unwrap();
    assert!(paths(&out).contains(&"opt/main.c".to_string()));
    assert!(
        !paths(&out).contains(&"opt/".to_string()),
        "an existing dir is left alone"
    );
}

#[test]
fn chown_chmod_and_ignore() {
    let f = fixture("src/sub\n");
    let t = base_tree();
    let mut o = op(&["."], "/app/");
    o.chmod = Some(0o640);
    let env = CopyEnv {
        store: &f.store,
        dest_tree: &t,
        owner: Some((1000, 1001)),
        now: 42,
        tmp: &f.tmp,
        download: &no_download,
    };
    let out = entries(&o, &Source::Context(&f.ctx), &env).unwrap().entries;
    assert!(
        !paths(&out).iter().any(|p| p.contains("sub")),
        "{:?}",
        paths(&out)
    );
    assert!(out.iter().all(|e| e.uid == 1000 && e.gid == 1001));
    assert!(
        out.iter()
            .filter(|e| e.path != "app")
            .all(|e| e.mode == 0o640)
    );
}

#[test]
fn missing_sources_fail() {
    let f = fixture("b.txt\n");
    let t = base_tree();
    assert!(
        run(&f, &op(&["nope"], "/x"), &t)
            .unwrap_err()
            .contains("not found")
    );
    assert!(
        run(&f, &op(&["b.txt"], "/x"), &t)
            .unwrap_err()
            .contains(".dockerignore")
    );
    assert!(run(&f, &op(&["*.none"], "/x/"), &t).is_err());
}

#[test]
fn keys_follow_content_not_mtimes() {
    let f = fixture("");
    let o = op(&["src"], "/app");
    let k1 = context_key(&o, &f.ctx).unwrap();
    let file = fs::File::options()
        .write(true)
        .open(f.ctx_root.join("src/main.c"))
        .unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH)
        .unwrap();
    let fresh = Context::dir(&f.ctx_root, Ignore::default());
    assert_eq!(
        context_key(&o, &fresh).unwrap(),
        k1,
        "mtime alone changes nothing"
    );
    fs::write(f.ctx_root.join("src/main.c"), "MAIN").unwrap();
    let fresh = Context::dir(&f.ctx_root, Ignore::default());
    assert_ne!(context_key(&o, &fresh).unwrap(), k1, "content does");
    fs::set_permissions(
        f.ctx_root.join("src/main.c"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let k3 = context_key(&o, &Context::dir(&f.ctx_root, Ignore::default())).unwrap();
    fs::set_permissions(
        f.ctx_root.join("src/main.c"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let k4 = context_key(&o, &Context::dir(&f.ctx_root, Ignore::default())).unwrap();
    assert_ne!(k3, k4, "so does the mode");
}

#[test]
fn add_extracts_local_archives() {
    let f = fixture("");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o600);
    h.set_uid(7);
    b.append_data(&mut h, "inner/file", &b"hi"[..]).unwrap();
    let raw = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    fs::write(f.ctx_root.join("bundle.tar.gz"), gz.finish().unwrap()).unwrap();
    let mut o = op(&["bundle.tar.gz"], "/opt/");
    o.add = true;
    let out = contents(&f, &o, &base_tree()).unwrap();
    assert_eq!(paths(&out.entries), Vec::<String>::new(), "/opt exists");
    assert_eq!(
        out.unpacks,
        vec![Unpack {
            archive: f.ctx_root.join("bundle.tar.gz"),
            into: "opt".into(),
            owner: None,
            chmod: None,
        }]
    );
    // into a new directory, with --chmod: the parents are entries, the members come later
    let mut o = op(&["bundle.tar.gz"], "/new/dir/");
    o.add = true;
    o.chmod = Some(0o640);
    let out = contents(&f, &o, &base_tree()).unwrap();
    assert_eq!(paths(&out.entries), vec!["new/", "new/dir/"]);
    assert_eq!(out.unpacks[0].into, "new/dir");
    assert_eq!(out.unpacks[0].chmod, Some(0o640));
    // COPY keeps it as it is
    let out = run(&f, &op(&["bundle.tar.gz"], "/opt/"), &base_tree()).unwrap();
    assert_eq!(paths(&out), vec!["opt/bundle.tar.gz"]);
}

#[test]
fn heredocs_are_files() {
    let f = fixture("");
    let o = CopyOp {
        sources: vec![CopySrc::Inline {
            name: "EOF".into(),
            content: "hello\n".into(),
        }],
        ..op(&[], "/etc/greeting")
    };
    let out = run(&f, &o, &base_tree()).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].path, "etc/greeting");
    assert_eq!(out[0].kind, Kind::File(Content::Bytes(b"hello\n".to_vec())));
}

#[test]
fn url_names() {
    assert_eq!(url_file_name("http://h:1/a/b.tgz?x=1"), "b.tgz");
    assert_eq!(url_file_name("http://h/"), "index.html");
}
