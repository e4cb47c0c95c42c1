//! Package databases as an image's files hold them, parsed from their bytes: dpkg's `status`
//! (and distroless' `status.d/`), apk's `installed`, rpm's header blobs (the rows of
//! `rpmdb.sqlite`), and `os-release`. No I/O here: `sbom` finds the files in the layers.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Which package manager installed a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Manager {
    Deb,
    Apk,
    Rpm,
}

impl Manager {
    /// The purl type.
    pub fn purl_type(self) -> &'static str {
        match self {
            Manager::Deb => "deb",
            Manager::Apk => "apk",
            Manager::Rpm => "rpm",
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    /// As the manager writes it (`1:1.35.0-4`, `1.36.1-r2`, `2:9.0-1.fc39` with the epoch).
    pub version: String,
    pub arch: Option<String>,
    /// The source package, when it differs from the name.
    pub source: Option<String>,
    pub license: Option<String>,
    /// Maintainer (dpkg, apk) or vendor (rpm).
    pub supplier: Option<String>,
    pub homepage: Option<String>,
    pub summary: Option<String>,
}

/// What `os-release` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub name: Option<String>,
    pub pretty_name: Option<String>,
}

/// RFC 822-style paragraphs (dpkg's status): (field lower-cased, value with continuation
/// lines joined by newlines) per paragraph.
fn paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = current.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            current.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn field<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The packages of a dpkg status file (or a `status.d/` entry): those installed (a paragraph
/// without `Status`, as distroless writes them, counts as installed).
pub fn parse_dpkg(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for p in paragraphs(text) {
        let installed =
            field(&p, "status").is_none_or(|s| s.split_whitespace().nth(2) == Some("installed"));
        let (Some(name), Some(version)) = (field(&p, "package"), field(&p, "version")) else {
            continue;
        };
        if !installed {
            continue;
        }
        let source = field(&p, "source")
            .and_then(|s| s.split_whitespace().next())
            .filter(|s| *s != name)
            .map(str::to_string);
        out.push(Package {
            name: name.to_string(),
            version: version.to_string(),
            arch: field(&p, "architecture").map(str::to_string),
            source,
            license: None,
            supplier: field(&p, "maintainer").map(str::to_string),
            homepage: field(&p, "homepage").map(str::to_string),
            summary: field(&p, "description")
                .and_then(|d| d.lines().next())
                .map(str::to_string),
        });
    }
    out
}

/// The packages of apk's `lib/apk/db/installed` (`P:name`, `V:version`... one paragraph each).
pub fn parse_apk(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let mut fields: Vec<(char, String)> = Vec::new();
    let mut flush = |fields: &mut Vec<(char, String)>| {
        let get = |c: char| {
            fields
                .iter()
                .find(|(k, v)| *k == c && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        if let (Some(name), Some(version)) = (get('P'), get('V')) {
            let origin = get('o').filter(|o| *o != name);
            out.push(Package {
                name,
                version,
                arch: get('A'),
                source: origin,
                license: get('L'),
                supplier: get('m'),
                homepage: get('U'),
                summary: get('T'),
            });
        }
        fields.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            flush(&mut fields);
            continue;
        }
        let mut chars = line.chars();
        if let (Some(k), Some(':')) = (chars.next(), chars.next()) {
            fields.push((k, chars.as_str().to_string()));
        }
    }
    flush(&mut fields);
    out
}

// rpm header tags and types (rpm's lib/rpmtag.h).
const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_SUMMARY: u32 = 1004;
const TAG_VENDOR: u32 = 1011;
const TAG_LICENSE: u32 = 1014;
const TAG_URL: u32 = 1020;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;
const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// Why an rpm header blob cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an rpm header is malformed: {0}")]
pub struct RpmHeaderError(&'static str);

/// One package from an rpm header blob as `rpmdb.sqlite` stores it (no lead or magic: the
/// index count and data size first, big-endian, then the index entries, then the data).
/// Packages without a name (the `gpg-pubkey` pseudo packages have one) are None.
pub fn parse_rpm_header(blob: &[u8]) -> Result<Option<Package>, RpmHeaderError> {
    let be32 = |at: usize| -> Result<u32, RpmHeaderError> {
        blob.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or(RpmHeaderError("it ends early"))
    };
    let count = be32(0)? as usize;
    let data_len = be32(4)? as usize;
    let index_end = count
        .checked_mul(16)
        .and_then(|n| n.checked_add(8))
        .ok_or(RpmHeaderError("its index is too large"))?;
    let data = blob
        .get(index_end..)
        .and_then(|d| d.get(..data_len))
        .ok_or(RpmHeaderError("its data is shorter than its header says"))?;
    let mut pkg = Package::default();
    let mut epoch = None;
    let mut release = String::new();
    let string_at = |offset: usize| -> Option<String> {
        let rest = data.get(offset..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some(String::from_utf8_lossy(&rest[..end]).into_owned())
    };
    for i in 0..count {
        let at = 8 + i * 16;
        let (tag, kind, offset) = (be32(at)?, be32(at + 4)?, be32(at + 8)? as usize);
        let text = || match kind {
            TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING => string_at(offset),
            _ => None,
        };
        match tag {
            TAG_NAME => pkg.name = text().unwrap_or_default(),
            TAG_VERSION => pkg.version = text().unwrap_or_default(),
            TAG_RELEASE => release = text().unwrap_or_default(),
            TAG_EPOCH if kind == TYPE_INT32 => {
                epoch = data
                    .get(offset..offset + 4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            }
            TAG_SUMMARY => pkg.summary = text(),
            TAG_VENDOR => pkg.supplier = text(),
            TAG_LICENSE => pkg.license = text(),
            TAG_URL => pkg.homepage = text(),
            TAG_ARCH => pkg.arch = text(),
            TAG_SOURCERPM => {
                // `name-version-release.src.rpm`: the name is what precedes the last two dashes.
                pkg.source = text().and_then(|s| {
                    let base = s.strip_suffix(".src.rpm").unwrap_or(&s);
                    let mut parts = base.rsplitn(3, '-');
                    let (_, _, name) = (parts.next()?, parts.next()?, parts.next()?);
                    Some(name.to_string())
                });
            }
            _ => {}
        }
    }
    if pkg.name.is_empty() {
        return Ok(None);
    }
    if pkg.source.as_deref() == Some(pkg.name.as_str()) {
        pkg.source = None;
    }
    let mut version = String::new();
    if let Some(e) = epoch {
        version.push_str(&format!("{e}:"));
    }
    version.push_str(&pkg.version);
    if !release.is_empty() {
        version.push('-');
        version.push_str(&release);
    }
    pkg.version = version;
    Ok(Some(pkg))
}

/// `os-release`: `KEY=value` lines, values optionally quoted as in a shell.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = unquote(v.trim());
        let slot = match k.trim() {
            "ID" => &mut os.id,
            "VERSION_ID" => &mut os.version_id,
            "NAME" => &mut os.name,
            "PRETTY_NAME" => &mut os.pretty_name,
            _ => continue,
        };
        *slot = Some(v).filter(|v| !v.is_empty());
    }
    os
}

fn unquote(v: &str) -> String {
    if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return inner.to_string();
    }
    let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return v.to_string();
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(n) = chars.next()
        {
            out.push(n);
        } else {
            out.push(c);
        }
    }
    out
}

/// purl's rule: everything but letters, digits and `.-_~` percent-encoded.
const PURL_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// The package URL (`pkg:deb/debian/busybox@1%3A1.35.0-4?arch=amd64&distro=debian-12`).
pub fn purl(manager: Manager, pkg: &Package, os: &OsRelease) -> String {
    let namespace = os.id.as_deref().unwrap_or(match manager {
        Manager::Deb => "debian",
        Manager::Apk => "alpine",
        Manager::Rpm => "redhat",
    });
    let enc = |s: &str| utf8_percent_encode(s, PURL_ENCODE).to_string();
    let mut out = format!(
        "pkg:{}/{}/{}@{}",
        manager.purl_type(),
        enc(namespace),
        enc(&pkg.name),
        enc(&pkg.version)
    );
    let mut qualifiers = Vec::new();
    if let Some(a) = &pkg.arch {
        qualifiers.push(format!("arch={}", enc(a)));
    }
    if let (Some(id), Some(v)) = (&os.id, &os.version_id) {
        qualifiers.push(format!("distro={}", enc(&format!("{id}-{v}"))));
    }
    if !qualifiers.is_empty() {
        out.push('?');
        out.push_str(&qualifiers.join("&"));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn dpkg_status_lists_installed_packages_only() {
        let status = "Package: busybox-static\nStatus: install ok installed\nArchitecture: amd64\n\
Source: busybox (1:1.35.0-4)\nVersion: 1:1.35.0-4+b1\nMaintainer: Debian Installer Team <d@x>\n\
Description: Standalone rescue shell\n with tons of builtin utilities\nHomepage: http://www.busybox.net\n\n\
Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n\
Package: netbase\nStatus: install ok installed\nVersion: 6.4\nArchitecture: all\n";
        let pkgs = parse_dpkg(status);
        let names: Vec<&str> = pkgs.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["busybox-static", "netbase"]);
        let b = &pkgs[0];
        assert_eq!(b.version, "1:1.35.0-4+b1");
        assert_eq!(b.source.as_deref(), Some("busybox"));
        assert_eq!(b.summary.as_deref(), Some("Standalone rescue shell"));
        assert_eq!(b.homepage.as_deref(), Some("http://www.busybox.net"));
        // distroless' status.d entries have no Status field.
        assert_eq!(parse_dpkg("Package: base\nVersion: 1\n").len(), 1);
    }

    #[test]
    fn apk_installed_database() {
        let db = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\nT:the musl c library\no:musl\n\n\
P:busybox-binsh\nV:1.36.1-r5\nA:x86_64\no:busybox\nL:GPL-2.0-only\n";
        let pkgs = parse_apk(db);
        assert_eq!(pkgs.len(), 2);
        assert_eq!(pkgs[0].name, "musl");
        assert_eq!(pkgs[0].source, None);
        assert_eq!(pkgs[0].license.as_deref(), Some("MIT"));
        assert_eq!(pkgs[1].source.as_deref(), Some("busybox"));
    }

    /// An rpm header blob with these (tag, type, value) entries.
    pub(crate) fn rpm_header(entries: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, kind, value) in entries {
            index.extend_from_slice(&tag.to_be_bytes());
            index.extend_from_slice(&kind.to_be_bytes());
            index.extend_from_slice(&(data.len() as u32).to_be_bytes());
            index.extend_from_slice(&1u32.to_be_bytes());
            data.extend_from_slice(value);
        }
        let mut blob = Vec::new();
        blob.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        blob.extend(index);
        blob.extend(data);
        blob
    }

    #[test]
    fn rpm_headers() {
        let blob = rpm_header(&[
            (TAG_NAME, TYPE_STRING, b"bash\0"),
            (TAG_EPOCH, TYPE_INT32, &2u32.to_be_bytes()),
            (TAG_VERSION, TYPE_STRING, b"5.2.26\0"),
            (TAG_RELEASE, TYPE_STRING, b"3.fc40\0"),
            (TAG_ARCH, TYPE_STRING, b"x86_64\0"),
            (TAG_LICENSE, TYPE_STRING, b"GPL-3.0-or-later\0"),
            (TAG_SOURCERPM, TYPE_STRING, b"bash-5.2.26-3.fc40.src.rpm\0"),
        ]);
        let p = parse_rpm_header(&blob).unwrap().unwrap();
        assert_eq!(p.name, "bash");
        assert_eq!(p.version, "2:5.2.26-3.fc40");
        assert_eq!(p.arch.as_deref(), Some("x86_64"));
        assert_eq!(p.source, None, "same as the name");
        assert_eq!(p.license.as_deref(), Some("GPL-3.0-or-later"));
        // Truncated or lying headers are errors, never panics.
        for cut in [0, 3, 8, 20, blob.len() - 1] {
            let _ = parse_rpm_header(&blob[..cut]);
        }
        let mut lying = blob.clone();
        lying[0..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_rpm_header(&lying).is_err());
        let nameless = rpm_header(&[(TAG_VERSION, TYPE_STRING, b"1\0")]);
        assert_eq!(parse_rpm_header(&nameless).unwrap(), None);
    }

    #[test]
    fn os_release_and_purls() {
        let os = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME='Debian GNU/Linux'\nVERSION_ID=\"12\"\nID=debian\n# c\n",
        );
        assert_eq!(os.id.as_deref(), Some("debian"));
        assert_eq!(os.version_id.as_deref(), Some("12"));
        assert_eq!(os.name.as_deref(), Some("Debian GNU/Linux"));
        let p = Package {
            name: "busybox-static".into(),
            version: "1:1.35.0-4+deb12u1".into(),
            arch: Some("amd64".into()),
            ..Default::default()
        };
        assert_eq!(
            purl(Manager::Deb, &p, &os),
            "pkg:deb/debian/busybox-static@1%3A1.35.0-4%2Bdeb12u1?arch=amd64&distro=debian-12"
        );
    }
}
