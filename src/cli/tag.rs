//! `manifold tag SRC DEST`.

use super::Settings;
use super::args::TagArgs;
use super::errors::user_error;
use crate::reference::Reference;

pub fn run(args: TagArgs, settings: &Settings) -> anyhow::Result<()> {
    let target = Reference::parse(&args.target)?;
    if target.digest().is_some() {
        return Err(user_error(
            format!(
                "refusing to create a tag with a digest reference: `{}`",
                args.target
            ),
            Some("a tag is `name:tag`; digests name content and cannot be moved"),
        ));
    }
    let store = settings.store()?;
    let source = store.lookup(&args.source)?;
    store.begin()?.tag(&target, &source.descriptor)?;
    Ok(())
}
