//! Errors as the user sees them through the chain (issue 10, defect 6): a message does not repeat
//! its cause, which has a `caused by:` line of its own. (`src/hint.rs` scans every error enum for
//! that; this pins one end to end.)

use crate::harness::{manifold, manifold_snapshot};

#[test]
fn a_store_root_that_cannot_be_created_says_why_once() {
    // `/proc/version` is a file on every Linux: the root cannot be made under it.
    manifold_snapshot!(manifold().args(["--root", "/proc/version/x", "images"]), @"
    success: false
    exit_code: 125
    ----- stdout -----

    ----- stderr -----
    error: cannot open the store at /proc/version/x
      caused by: cannot create /proc/version
      caused by: File exists (os error 17)
    ");
}
