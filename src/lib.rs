//! manifold: a daemonless, multi-architecture OCI image toolkit.
//!
//! Dependencies point one way: `cli` → feature modules (`bake`, `builder`, `runtime`,
//! `manifest`, `archive`, `verify`) → `ops` → `content`/`registry`/`store`/`layer`/`binfmt` →
//! `dockerfile`, `oci`/`reference`/`platform`/`userns`. README.md's module map says what each owns.

// `println!` panics when stdout's reader has gone (Rust ignores SIGPIPE): data goes through
// `cli::output`, whose closed-pipe error the CLI turns into a quiet exit.
#![deny(clippy::print_stdout)]

pub mod archive;
pub mod attest;
pub mod bake;
pub mod binfmt;
pub mod builder;
pub mod cli;
pub mod content;
pub mod dockerfile;
pub mod elf;
/// Entry points of the fuzz targets in `fuzz/` (and of their corpus replay in `cargo test`).
#[doc(hidden)]
pub mod fuzzing;
pub mod hint;
pub mod layer;
pub mod lexical;
pub mod manifest;
pub mod oci;
pub mod ops;
pub mod passwd;
pub mod platform;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod runtime;
pub mod space;
pub mod store;
pub mod userns;
pub mod verify;

#[cfg(test)]
pub(crate) mod testutil {
    /// An error with its causes, `error: cause: cause`, as the CLI shows them on one line each.
    pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
        std::iter::successors(Some(e), |e| e.source())
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ")
    }

    /// (path, file content, symlink target, mode): content for files, a target for links,
    /// neither for directories.
    pub type TarEntry<'a> = (&'a str, Option<&'a [u8]>, Option<&'a str>, u32);

    /// A tar stream of `entries`, in order.
    pub fn tar_of(entries: &[TarEntry]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data, link, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(*mode);
            match (data, link) {
                (Some(d), _) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    b.append_data(&mut h, path, *d).unwrap();
                }
                (None, Some(l)) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, path, l).unwrap();
                }
                (None, None) => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, path, std::io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// Whether the test may do what only root can (mounts, chown, device nodes). When not root
    /// it says so and returns false, unless MANIFOLD_TEST_REQUIRE_ALL is set (CI), where a skip
    /// would hide a failure: then it panics.
    pub fn require_root() -> bool {
        if rustix::process::geteuid().is_root() {
            return true;
        }
        let strict = std::env::var_os("MANIFOLD_TEST_REQUIRE_ALL")
            .is_some_and(|v| !v.is_empty() && v != "0");
        assert!(
            !strict,
            "this test needs root, and MANIFOLD_TEST_REQUIRE_ALL forbids skipping it"
        );
        eprintln!("skipped: this test needs root");
        false
    }
}
