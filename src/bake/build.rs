//! How a bake target is built: what `manifold build -f DOCKERFILE [--platform …] [--build-arg …]
//! [--label …] [--target …] [-t …] CONTEXT` does, through the builder's session, into the shared
//! store — then tagged with the target's tags.

use super::run::{BuildRequest, TargetBuilder};
use crate::builder::secrets::{Secrets, SshAgents};
use crate::builder::{self, BuildError, BuildReporter};
use crate::oci::Descriptor;

/// Builds each target with one [`builder::Builder`] (one store, one runner, one cache).
pub struct StoreBuilder<'a> {
    pub builder: builder::Builder<'a>,
}

impl TargetBuilder for StoreBuilder<'_> {
    fn build(
        &self,
        request: &BuildRequest,
        reporter: &dyn BuildReporter,
    ) -> Result<Descriptor, BuildError> {
        let secrets = Secrets::load(&request.secrets)?;
        let ssh = SshAgents::load(&request.ssh)?;
        let name = request.dockerfile.display().to_string();
        let (context, dockerfile) =
            builder::session::load_dir(&request.context, &request.dockerfile, &name)?;
        // The build and its tags in one transaction: no collection in between.
        let txn = self.builder.store.begin()?;
        let out = self.builder.build(
            &txn,
            builder::Request {
                dockerfile: &dockerfile,
                context: &context,
                platforms: request.platforms.clone(),
                target: request.target.clone(),
                build_args: request.args.clone(),
                labels: request.labels.clone(),
                allow: request.allow.clone(),
                secrets: &secrets,
                ssh: &ssh,
            },
            reporter,
        )?;
        if request.tags.is_empty() {
            txn.add_untagged(&out.root)?;
        }
        for t in &request.tags {
            txn.tag(t, &out.root)?;
        }
        Ok(out.root)
    }
}
