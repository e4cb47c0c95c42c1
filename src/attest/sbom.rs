//! SBOMs: the packages an image holds, read from the package databases in its layers through
//! the merged view (`layer::merged`: whiteouts applied, symlinks such as Debian's
//! `etc/os-release → ../usr/lib/os-release` followed), never from a network service; written
//! as an SPDX 2.3 JSON document inside an in-toto statement (predicate `https://spdx.dev/Document`,
//! as BuildKit writes it).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::AttestError;
use super::packages::{self, Manager, OsRelease, Package};
use super::statement::{SPDX_DOCUMENT, Statement};
use crate::layer::merged::{self, Merged};
use crate::layer::{Compression, LayerError};
use crate::oci::{Digest, Manifest};
use crate::store::Store;

/// The largest database file read (a Fedora image's rpmdb.sqlite is 5 to 20 MB).
const MAX_DATABASE: u64 = 128 << 20;

/// Where the databases are (relative, as the merged view names paths).
const DPKG_STATUS: &str = "var/lib/dpkg/status";
const DPKG_STATUS_D: &str = "var/lib/dpkg/status.d";
const APK_INSTALLED: &str = "lib/apk/db/installed";
const RPM_SQLITE: [&str; 2] = [
    "usr/lib/sysimage/rpm/rpmdb.sqlite",
    "var/lib/rpm/rpmdb.sqlite",
];
const OS_RELEASE: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];

/// The file names whose contents are kept while the layers are read: wherever a symlink may
/// lead, the file it reaches keeps its name.
fn kept(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    matches!(name, "os-release" | "status" | "installed" | "rpmdb.sqlite")
        || path.contains("/status.d/")
}

/// What the tree keeps of a file: the contents of the files `kept` names (None when larger
/// than the limit), and its size.
type Node = merged::Entry<(Option<Vec<u8>>, u64)>;

/// What an image holds: its OS and packages, each with the database it was read from.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub os: OsRelease,
    pub packages: Vec<(Manager, Package, String)>,
}

/// Read the packages of the image `manifest` (its layers in the store).
pub fn inventory(store: &Store, manifest: &Manifest) -> Result<Inventory, AttestError> {
    let tree = merged_tree(store, manifest)?;
    let mut inv = Inventory::default();
    for p in OS_RELEASE {
        if let Some(bytes) = file(&tree, p)? {
            inv.os = packages::parse_os_release(&String::from_utf8_lossy(&bytes));
            break;
        }
    }
    if let Some(bytes) = file(&tree, DPKG_STATUS)? {
        for p in packages::parse_dpkg(&String::from_utf8_lossy(&bytes)) {
            inv.packages
                .push((Manager::Deb, p, format!("/{DPKG_STATUS}")));
        }
    }
    let status_d: Vec<String> = tree
        .under(DPKG_STATUS_D)
        .filter(|(p, n)| matches!(n, Node::File(..)) && !p.ends_with(".md5sums"))
        .map(|(p, _)| p.to_string())
        .collect();
    for path in status_d {
        if let Some(bytes) = file(&tree, &path)? {
            for p in packages::parse_dpkg(&String::from_utf8_lossy(&bytes)) {
                inv.packages.push((Manager::Deb, p, format!("/{path}")));
            }
        }
    }
    if let Some(bytes) = file(&tree, APK_INSTALLED)? {
        for p in packages::parse_apk(&String::from_utf8_lossy(&bytes)) {
            inv.packages
                .push((Manager::Apk, p, format!("/{APK_INSTALLED}")));
        }
    }
    for path in RPM_SQLITE {
        if let Some(bytes) = file(&tree, path)? {
            for p in rpm_packages(store, path, &bytes)? {
                inv.packages.push((Manager::Rpm, p, format!("/{path}")));
            }
            break;
        }
    }
    inv.packages.sort_by(|a, b| {
        (a.0, &a.1.name, &a.1.version, &a.1.arch).cmp(&(b.0, &b.1.name, &b.1.version, &b.1.arch))
    });
    inv.packages
        .dedup_by(|a, b| a.0 == b.0 && a.1.name == b.1.name && a.1.version == b.1.version);
    Ok(inv)
}

fn merged_tree(store: &Store, manifest: &Manifest) -> Result<Merged<Node>, AttestError> {
    let mut tree = Merged::new();
    for l in &manifest.layers {
        let compression = Compression::from_media_type(&l.media_type).ok_or_else(|| {
            AttestError::UnsupportedLayer {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
            }
        })?;
        let wrap = |source| AttestError::Layer {
            digest: l.digest.clone(),
            source,
        };
        let plain = compression
            .reader(store.open_blob(&l.digest)?)
            .map_err(|e| wrap(LayerError::Decompress(e)))?;
        let entries = merged::layer_entries(plain, |path, entry| {
            let size = entry.size();
            let content = if kept(path) && size <= MAX_DATABASE {
                let mut buf = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut buf)?;
                Some(buf)
            } else {
                None
            };
            Ok((content, size))
        })
        .map_err(wrap)?;
        tree.push(entries);
    }
    Ok(tree)
}

/// The contents of the file at `path` (symlinks and a hard link followed); None when there is
/// no such file.
fn file(tree: &Merged<Node>, path: &str) -> Result<Option<Vec<u8>>, AttestError> {
    let Some((found, mut node)) = tree.lookup(path) else {
        return Ok(None);
    };
    if let Node::Hardlink(target) = node {
        match tree.get(target) {
            Some(n) => node = n,
            None => return Ok(None),
        }
    }
    match node {
        Node::File((Some(bytes), _)) => Ok(Some(bytes.clone())),
        Node::File((None, size)) => Err(AttestError::TooLarge {
            what: format!("/{found}"),
            size: *size,
            limit: MAX_DATABASE,
        }),
        _ => Ok(None),
    }
}

/// The packages of an rpm sqlite database (its bytes from the image): written to a temp file
/// of the store and read immutable, so that no journal or lock is looked for.
fn rpm_packages(store: &Store, path: &str, bytes: &[u8]) -> Result<Vec<Package>, AttestError> {
    let temp_err = |source| AttestError::Temp {
        dir: store.tmp_dir().to_path_buf(),
        source,
    };
    let mut tmp = crate::store::private::temp_file(store.tmp_dir(), "rpmdb-").map_err(temp_err)?;
    tmp.write_all(bytes).map_err(temp_err)?;
    let rpm_err = |source| AttestError::Rpm {
        path: path.to_string(),
        source,
    };
    let uri = format!("file:{}?immutable=1", tmp.path().display());
    let db = rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(rpm_err)?;
    let mut stmt = db.prepare("SELECT blob FROM Packages").map_err(rpm_err)?;
    let rows = stmt
        .query_map([], |row| row.get::<_, Vec<u8>>(0))
        .map_err(rpm_err)?;
    let mut out = Vec::new();
    for blob in rows {
        let blob = blob.map_err(rpm_err)?;
        match packages::parse_rpm_header(&blob) {
            Ok(Some(p)) if p.name != "gpg-pubkey" => out.push(p),
            Ok(_) => {}
            Err(e) => return Err(AttestError::Invalid(format!("/{path}: {e}"))),
        }
    }
    Ok(out)
}

/// An SPDX element ID for a package: its kind, name and a hash of its purl (unique, and only
/// the characters SPDX allows).
fn spdx_id(manager: Manager, pkg: &Package, purl: &str) -> String {
    let clean: String = pkg
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let hash = Digest::sha256_of(purl.as_bytes());
    format!(
        "SPDXRef-Package-{}-{clean}-{}",
        manager.purl_type(),
        &hash.hex()[..16]
    )
}

/// The SPDX 2.3 document of `inv` for the image manifest `subject` named `name`.
pub fn spdx(inv: &Inventory, name: &str, subject: &Digest, created: DateTime<Utc>) -> Value {
    let mut packages = Vec::new();
    let mut relationships = Vec::new();
    let mut ids = BTreeMap::new();
    if inv.os.id.is_some() {
        let os_name = inv.os.id.clone().unwrap_or_default();
        packages.push(json!({
            "name": os_name,
            "SPDXID": "SPDXRef-OperatingSystem",
            "versionInfo": inv.os.version_id.clone().unwrap_or_default(),
            "description": inv.os.pretty_name.clone().or(inv.os.name.clone()).unwrap_or_default(),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": "SPDXRef-OperatingSystem",
        }));
    }
    for (manager, pkg, db) in &inv.packages {
        let purl = packages::purl(*manager, pkg, &inv.os);
        let mut id = spdx_id(*manager, pkg, &purl);
        let n = ids.entry(id.clone()).or_insert(0usize);
        *n += 1;
        if *n > 1 {
            id = format!("{id}-{n}");
        }
        let mut p = json!({
            "name": pkg.name,
            "SPDXID": id,
            "versionInfo": pkg.version,
            "supplier": pkg.supplier.as_ref().map_or("NOASSERTION".to_string(), |s| format!("Organization: {s}")),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": pkg.license.clone().unwrap_or_else(|| "NOASSERTION".into()),
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "LIBRARY",
            "sourceInfo": format!("acquired package info from {db}"),
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl,
            }],
        });
        if let Some(s) = &pkg.summary {
            p["summary"] = json!(s);
        }
        if let Some(h) = &pkg.homepage {
            p["homepage"] = json!(h);
        }
        if let Some(s) = &pkg.source {
            p["comment"] = json!(format!("source package: {s}"));
        }
        packages.push(p);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": id,
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": format!("{}/spdx/{}/{}", super::BUILDER_ID, subject.algorithm().name(), subject.hex()),
        "creationInfo": {
            "created": created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "creators": [format!("Tool: manifold-{}", super::VERSION)],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

/// The SBOM statement of an image manifest held in the store.
pub fn statement(
    store: &Store,
    subject: &Digest,
    name: &str,
    created: DateTime<Utc>,
) -> Result<Statement, AttestError> {
    let manifest = store.read_manifest(subject)?;
    let inv = inventory(store, &manifest.value)?;
    let doc = spdx(&inv, name, subject, created);
    Ok(Statement::new(name, subject, SPDX_DOCUMENT, doc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Descriptor, media_type};

    /// A tar entry: path, file content, link target (neither: a directory).
    type Entry<'a> = (&'a str, Option<&'a [u8]>, Option<&'a str>);

    /// Layers of files with mode 0644 (see `testutil::tar_of`).
    fn tar_of(entries: &[Entry<'_>]) -> Vec<u8> {
        let entries: Vec<_> = entries.iter().map(|&(p, d, l)| (p, d, l, 0o644)).collect();
        crate::testutil::tar_of(&entries)
    }

    fn manifest(store: &crate::store::Transaction, layers: &[Vec<u8>]) -> Manifest {
        Manifest::new_oci(
            Descriptor::of(media_type::OCI_CONFIG, b"{}"),
            layers
                .iter()
                .map(|l| {
                    Descriptor::new(
                        media_type::OCI_LAYER,
                        store.put_bytes(l).unwrap(),
                        l.len() as u64,
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn packages_come_from_the_merged_view() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let status =
            b"Package: a\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n\
Package: b\nStatus: install ok installed\nVersion: 2\nArchitecture: amd64\n";
        let base = tar_of(&[
            (
                "usr/lib/os-release",
                Some(b"ID=debian\nVERSION_ID=\"12\"\n"),
                None,
            ),
            ("etc/os-release", None, Some("../usr/lib/os-release")),
            ("var/lib/dpkg/status", Some(status), None),
            (
                "var/lib/dpkg/status.d/c",
                Some(b"Package: c\nVersion: 3\n"),
                None,
            ),
            ("var/lib/dpkg/status.d/c.md5sums", Some(b"x  /c\n"), None),
            (
                "var/lib/dpkg/status.d/gone",
                Some(b"Package: gone\nVersion: 9\n"),
                None,
            ),
        ]);
        let upper = tar_of(&[("var/lib/dpkg/status.d/.wh.gone", Some(b""), None)]);
        let m = manifest(&store.begin().unwrap(), &[base, upper]);
        let inv = inventory(&store, &m).unwrap();
        assert_eq!(inv.os.id.as_deref(), Some("debian"), "through the symlink");
        let names: Vec<&str> = inv.packages.iter().map(|p| p.1.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"], "the whiteout hides `gone`");
        let subject = Digest::sha256_of(b"m");
        let doc = spdx(&inv, "img", &subject, DateTime::UNIX_EPOCH);
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        let pkgs = doc["packages"].as_array().unwrap();
        assert_eq!(pkgs.len(), 4, "the OS and three packages");
        assert_eq!(
            pkgs[1]["externalRefs"][0]["referenceLocator"],
            "pkg:deb/debian/a@1?arch=amd64&distro=debian-12"
        );
        assert_eq!(doc["relationships"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn rpm_sqlite_databases_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let db_path = dir.path().join("rpmdb.sqlite");
        let db = rusqlite::Connection::open(&db_path).unwrap();
        db.execute_batch(
            "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL);",
        )
        .unwrap();
        let header = super::packages::tests::rpm_header(&[
            (1000, 6, b"bash\0"),
            (1001, 6, b"5.2\0"),
            (1002, 6, b"1.fc40\0"),
            (1022, 6, b"x86_64\0"),
        ]);
        db.execute("INSERT INTO Packages (blob) VALUES (?1)", [&header])
            .unwrap();
        drop(db);
        let bytes = std::fs::read(&db_path).unwrap();
        let layer = tar_of(&[
            ("etc/os-release", Some(b"ID=fedora\nVERSION_ID=40\n"), None),
            ("usr/lib/sysimage/rpm/rpmdb.sqlite", Some(&bytes), None),
            ("var/lib/rpm", None, Some("../../usr/lib/sysimage/rpm")),
        ]);
        let m = manifest(&store.begin().unwrap(), &[layer]);
        let inv = inventory(&store, &m).unwrap();
        assert_eq!(inv.packages.len(), 1);
        assert_eq!(inv.packages[0].1.version, "5.2-1.fc40");
        assert_eq!(inv.packages[0].0, Manager::Rpm);
        // Not an rpm database: a clear error naming it.
        let bad = tar_of(&[("var/lib/rpm/rpmdb.sqlite", Some(b"not sqlite"), None)]);
        let m = manifest(&store.begin().unwrap(), &[bad]);
        let e = inventory(&store, &m).unwrap_err();
        assert!(e.to_string().contains("/var/lib/rpm/rpmdb.sqlite"), "{e}");
    }
}
