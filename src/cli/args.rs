//! clap definitions: what the user typed, parsed, with no side effects.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "manifold",
    version,
    about = "Daemonless, multi-architecture container images: build, pull, run, push",
    propagate_version = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Store directory [default: /var/lib/manifold as root, else $XDG_DATA_HOME/manifold]
    #[arg(long, global = true, env = "MANIFOLD_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// A registry allowed over plain HTTP (loopback registries always are); repeatable
    #[arg(
        long = "insecure-registry",
        global = true,
        env = "MANIFOLD_INSECURE_REGISTRIES",
        value_delimiter = ',',
        value_name = "HOST[:PORT]"
    )]
    pub insecure_registries: Vec<String>,
    /// A mirror of Docker Hub to pull from first (docker's `registry-mirrors`); repeatable
    #[arg(
        long = "registry-mirror",
        global = true,
        env = "MANIFOLD_REGISTRY_MIRRORS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub registry_mirrors: Vec<String>,
    /// Progress display: bars on a terminal (auto), one line per event (plain), or none
    #[arg(long, global = true, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// More detail on stderr (`-v` before the command; `run -v` is a volume, as in docker)
    #[arg(long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[arg(short = 'v', action = clap::ArgAction::Count, hide = true)]
    pub verbose_short: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    Auto,
    Plain,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List images in the store
    #[command(visible_alias = "ls")]
    Images(ImagesArgs),
    /// Give an image another name
    Tag(TagArgs),
    /// Remove images (untag; delete when no tag is left)
    Rmi(RmiArgs),
    /// Remove dangling images and unreferenced blobs
    Prune(PruneArgs),
    /// Show an image's manifest, config and platforms as JSON
    Inspect(InspectArgs),
    /// Show the history of an image
    History(HistoryArgs),
    /// Write images to a docker-archive or OCI archive
    Save(SaveArgs),
    /// Load images from a docker-archive or OCI archive
    Load(LoadArgs),
    /// Create a single-layer image from a root filesystem tarball
    Import(ImportArgs),
    /// Run a command in a new container (foreign platforms through QEMU)
    Run(Box<super::run::RunArgs>),
    /// List containers
    Ps(super::ps::PsArgs),
    /// Show what a detached container wrote
    Logs(super::logs::LogsArgs),
    /// Run a command in a running container
    Exec(super::exec::ExecArgs),
    /// Start stopped containers again, in the background
    Start(super::start::StartArgs),
    /// Stop running containers (the stop signal, then SIGKILL)
    Stop(super::stop::StopArgs),
    /// Stop and start containers
    Restart(super::restart::RestartArgs),
    /// Send a signal to running containers
    Kill(super::kill::KillArgs),
    /// Wait until containers exit; print their exit statuses
    Wait(super::wait::WaitArgs),
    /// List a container's published ports
    Port(super::port::PortArgs),
    /// Show a container's processes
    Top(super::top::TopArgs),
    /// The monitor of a detached container (started by `run -d`, `start`)
    #[command(hide = true)]
    Monitor(super::monitor::MonitorArgs),
    /// Remove containers
    Rm(super::rm::RmArgs),
    /// Create an image from a container's changes
    Commit(super::commit::CommitArgs),
    /// Manage the QEMU emulators registered in binfmt_misc
    Binfmt(super::binfmt::BinfmtArgs),
    /// List the platforms this machine runs, natively or emulated
    Platforms(super::platforms::PlatformsArgs),
    /// Check binaries against platforms, and signatures against a key
    Verify(super::verify::VerifyArgs),
    /// Sign an image in cosign's format (the index and each platform)
    Sign(super::sign::SignArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Download an image from a registry into the store
    Pull(PullArgs),
    /// Upload an image from the store to a registry
    Push(PushArgs),
    /// Copy an image from one repository to another, without the store
    Copy(CopyArgs),
    /// Check and store credentials for a registry
    Login(LoginArgs),
    /// Remove stored credentials for a registry
    Logout(LogoutArgs),
    /// List the tags of a repository in a registry
    Tags(TagsArgs),
    /// Find repositories in a registry's catalog
    Search(SearchArgs),
    /// Build an image from a Dockerfile, for one or several platforms
    Build(Box<BuildArgs>),
    /// Create, annotate, inspect and push multi-platform manifest lists
    Manifest(super::manifest::ManifestArgs),
    /// Build the targets of a bake file (manifold.yaml) together
    Bake(super::bake::BakeArgs),
    /// Manage manifold's own data: `system reset` empties the store
    System(super::system::SystemArgs),
    /// Run a command as root of manifold's user namespace (rootless)
    Unshare(super::system::UnshareArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Dockerfile (`-` for stdin) [default: CONTEXT/Dockerfile]
    #[arg(short, long = "file", value_name = "FILE")]
    pub file: Option<String>,
    /// Name the image (repeatable)
    #[arg(short, long = "tag", value_name = "REF")]
    pub tags: Vec<String>,
    /// Target platforms, comma separated or repeated [default: the host's]
    #[arg(long, value_name = "PLATFORMS")]
    pub platform: Vec<String>,
    /// Set a build-time variable (`K=V`, or `K` to take it from the environment)
    #[arg(long = "build-arg", value_name = "K=V")]
    pub build_args: Vec<String>,
    /// The stage to build [default: the last]
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Set a label on the image (repeatable)
    #[arg(long = "label", value_name = "K=V")]
    pub labels: Vec<String>,
    /// Run every step, whatever the cache holds
    #[arg(long)]
    pub no_cache: bool,
    /// Let the build do what it may not by default: `network.host` (`RUN --network=host`)
    #[arg(long, value_name = "ENTITLEMENT")]
    pub allow: Vec<crate::dockerfile::plan::Entitlement>,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=FILE` or `id=ID,env=VARIABLE`
    /// (repeatable; never stored in the image, the cache or the log)
    #[arg(long, value_name = "SPEC")]
    pub secret: Vec<crate::builder::secrets::SecretSpec>,
    /// An SSH agent for `RUN --mount=type=ssh`: `default` (SSH_AUTH_SOCK), `default=SOCKET`
    /// or `ID=KEY[,KEY...]` (repeatable)
    #[arg(long, value_name = "SPEC")]
    pub ssh: Vec<crate::builder::secrets::SshSpec>,
    /// Push the image to each `-t` name
    #[arg(long)]
    pub push: bool,
    /// Push to REPO without a tag and print the digest (for CI matrix jobs)
    #[arg(long, value_name = "REPO")]
    pub push_by_digest: Option<String>,
    /// Also write an archive: `type=oci,dest=FILE` (any platforms) or `type=docker,dest=FILE`
    #[arg(short, long, value_name = "SPEC")]
    pub output: Vec<String>,
    /// Layer compression
    #[arg(long, value_name = "gzip|zstd", default_value = "gzip")]
    pub compression: String,
    /// Use the step records of a cache: `type=registry,ref=REF` or `type=local,src=DIR`
    /// (repeatable; all are consulted)
    #[arg(long, value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Write the steps to a cache: `type=registry,ref=REF` or `type=local,dest=DIR`, with
    /// `mode=min|max`, `ignore-error=true`, `max-size=SIZE` (repeatable)
    #[arg(long, value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// Attach SLSA provenance to each platform's image: `min` (parameters and dependencies) or `max` (the steps too)
    #[arg(long, value_name = "MODE", num_args = 0..=1, require_equals = true, default_missing_value = "min")]
    pub provenance: Option<String>,
    /// Attach an SPDX SBOM of the packages each platform's image holds
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub sbom: Option<String>,
    /// An attestation as buildx names it: `type=provenance[,mode=min|max]` or `type=sbom` (repeatable)
    #[arg(long, value_name = "SPEC")]
    pub attest: Vec<String>,
    /// How attestations are attached: OCI referrers (the index lists only platforms) or buildx's `unknown/unknown` index entries
    #[arg(long, value_enum, value_name = "FORM", default_value_t)]
    pub attest_format: AttestFormat,
    /// Write the build result (digest, names) as JSON to FILE
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Print only the image digest
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub run: IsolationArgs,
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// The build context: a directory, or `-` for a tarball (or a Dockerfile) on stdin
    pub context: String,
}

/// `--isolation`, of `build` and `bake`.
#[derive(Debug, Args)]
pub struct IsolationArgs {
    /// How RUN steps run: `oci` (a container), `proot` or `chroot` (no container: unprivileged
    /// build containers), `auto` (oci where a container can be made, else proot)
    #[arg(long, value_enum, value_name = "MODE", default_value_t = IsolationArg::Auto)]
    pub isolation: IsolationArg,
}

/// `--isolation` (the values are told in the flag's help: doc comments here would turn
/// the whole help into clap's long layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IsolationArg {
    // A container where one can be made, else proot (else chroot).
    Auto,
    // A container: runc over an overlay, namespaces, seccomp (root, or rootless).
    Oci,
    // proot's path translation in a plain directory: /proc, /dev and /sys bound in, no
    // namespaces.
    Proot,
    // chroot(2) into a plain directory: no /proc, no namespaces.
    Chroot,
}

/// `--attest-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AttestFormat {
    // OCI 1.1 referrers (the registry's referrers API, else the `sha256-<hex>` tag).
    #[default]
    Referrers,
    // buildx's inline form, for tools that read only that.
    Index,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Also list each platform's image inside multi-platform images
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Do not truncate IDs
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter: dangling=true|false, reference=PATTERN (repeatable)
    #[arg(short, long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
    /// Only images whose repository matches (like `reference=REPOSITORY`)
    pub repository: Option<String>,
}

#[derive(Debug, Args)]
pub struct TagArgs {
    /// An image in the store
    pub source: String,
    /// The new name
    pub target: String,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Remove an image by ID even when several tags name it
    #[arg(short, long)]
    pub force: bool,
    /// Images to remove: names or IDs
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all images without a tag, and every untagged leftover (not only dangling ones)
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Inspect this platform's image of a multi-platform image
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Print the stored manifest (or index) bytes exactly
    #[arg(long)]
    pub raw: bool,
    /// List the image's attestations and signatures (from the store, or its registry when the store lacks it)
    #[arg(long, conflicts_with = "raw")]
    pub attestations: bool,
    /// Print one attestation's statement (or signed payload): `provenance`, `sbom`, `signature`, a predicate type or a digest
    #[arg(long, value_name = "WHICH", conflicts_with = "raw")]
    pub attestation: Option<String>,
    /// Images in the store: names or IDs
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Show this platform's image of a multi-platform image
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show layer IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
    /// An image in the store
    pub image: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ArchiveFormat {
    #[default]
    Docker,
    Oci,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// docker-archive (what `docker load` reads) or an OCI archive (keeps whole indexes)
    #[arg(long, value_enum, default_value_t)]
    pub format: ArchiveFormat,
    /// Save this platform's image of multi-platform images
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Images in the store: names or IDs
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from FILE instead of stdin
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Only print the loaded image references or IDs
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The platform the image declares [default: the host's]
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Apply a Dockerfile instruction to the config: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message (recorded in history)
    #[arg(short, long)]
    pub message: Option<String>,
    /// A tarball (plain, gzip or zstd), or - for stdin
    pub file: String,
    /// Name of the new image
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    pub shell: clap_complete::Shell,
}

// How many blobs move at once (pull, push, copy, build, bake). Not a doc comment: a flattened
// struct's doc becomes the `about` of every command that has none of its own.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Blobs transferred at once
    #[arg(long, env = "MANIFOLD_CONCURRENCY", value_name = "N",
          default_value_t = crate::content::DEFAULT_CONCURRENCY as u16,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The platform to pull from a multi-platform image [default: the host's]
    #[arg(long, value_name = "PLATFORM", conflicts_with = "all_platforms")]
    pub platform: Option<String>,
    /// Pull every platform of a multi-platform image
    #[arg(long)]
    pub all_platforms: bool,
    /// Pull every tag of the repository
    #[arg(short, long)]
    pub all_tags: bool,
    /// Print only the digest
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// NAME[:TAG|@DIGEST]
    pub reference: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Push only these platforms of a multi-platform image, as a new index (repeatable, or comma separated)
    #[arg(long, value_name = "PLATFORM", value_delimiter = ',')]
    pub platform: Vec<String>,
    /// Print only the digest
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// An image in the store
    pub image: String,
    /// Where to push it [default: the image's own name]
    pub destination: Option<String>,
}

#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Copy only these platforms of a multi-platform image, as a new index (repeatable, or comma separated)
    #[arg(
        long,
        value_name = "PLATFORM",
        value_delimiter = ',',
        conflicts_with = "all_platforms"
    )]
    pub platform: Vec<String>,
    /// Copy every platform (the default)
    #[arg(long)]
    pub all_platforms: bool,
    /// Print only the digest
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub transfer: TransferArgs,
    /// REGISTRY/NAME[:TAG|@DIGEST]
    pub source: String,
    /// REGISTRY/NAME[:TAG]
    pub destination: String,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name [default: asked on the terminal]
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (visible to other users of the machine: prefer --password-stdin)
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// The registry [default: docker.io]
    pub registry: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// The registry [default: docker.io]
    pub registry: Option<String>,
}

#[derive(Debug, Args)]
pub struct TagsArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
    /// REGISTRY/NAME
    pub repository: String,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Show at most N results
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: ListFormat,
    /// REGISTRY/TERM: repositories of REGISTRY whose name contains TERM (REGISTRY alone lists all)
    pub query: String,
}
