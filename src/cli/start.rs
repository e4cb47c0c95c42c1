//! `manifold start [-a] [-i] CONTAINER...`: start stopped containers again, each under a monitor
//! of its own as `run -d` does (its root mounted anew, its ports published again, its log
//! continued). With `-a`, stay attached: print what it writes until it exits, and exit with its
//! status; `-i` also sends stdin to a container started with `-i`.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

use super::Settings;
use super::errors::{Reported, user_error};
use super::monitor::{Launched, launch};
use crate::runtime::logs::{self, LOG_FILE, Query, Stream};
use crate::runtime::oci_runtime::RuntimeState;
use crate::runtime::service::{self, MONITOR_SOCKET, SocketPath, Waited};
use crate::runtime::{Containers, OciRuntime, Status};

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Stay attached: print the container's output until it exits, and exit with its status
    #[arg(short, long)]
    pub attach: bool,
    /// Send stdin to the container (one started with `-i`)
    #[arg(short, long)]
    pub interactive: bool,
    /// Containers to start: names or IDs
    #[arg(required = true, value_name = "CONTAINER")]
    pub containers: Vec<String>,
}

pub fn run(args: StartArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = settings.store()?;
    let containers = super::containers::reconciled(&store)?;
    if !(args.attach || args.interactive) {
        super::containers::each(&args.containers, "started", |key| {
            start(settings, &containers, key)
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let [key] = args.containers.as_slice() else {
        return Err(user_error(
            "you cannot start and attach multiple containers at once",
            Some("start them without `-a`, then follow each with `manifold logs -f`"),
        ));
    };
    let record = containers.find(key)?;
    let path = containers.dir_of(&record.id).dir.join(LOG_FILE);
    // From the log's end as it is now: what this start adds.
    let position = logs::read(
        &path,
        &Query {
            tail: Some(0),
            ..Default::default()
        },
        |_| Ok(()),
    )?;
    start(settings, &containers, key)?;
    let record = containers.get(&record.id)?;
    if args.interactive {
        attach_stdin(&containers, &record.id);
    }
    let oci = OciRuntime::find(&record.runtime, store.root()).ok();
    let exited = AtomicBool::new(false);
    let code = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let w = service::wait(&containers, oci.as_ref(), &record, None);
            exited.store(true, Ordering::SeqCst);
            w
        });
        let mut out = super::output::stdout();
        let mut err = std::io::stderr();
        let followed = logs::follow(
            &path,
            position,
            &Query::default(),
            || !exited.load(Ordering::SeqCst),
            |e| {
                let to: &mut dyn Write = match e.stream {
                    Stream::Stdout => &mut out,
                    Stream::Stderr => &mut err,
                };
                to.write_all(e.log.as_bytes())?;
                to.flush()
            },
        );
        let waited = waiter.join().expect("the waiting thread does not panic");
        followed?;
        anyhow::Ok(waited?)
    })?;
    match code {
        Waited::Exited(Some(c)) => Ok(ExitCode::from(c.clamp(0, 255) as u8)),
        _ => Ok(ExitCode::from(super::EXIT_MANIFOLD_FAILED)),
    }
}

/// Start one stopped container under a new monitor; one that runs is left as it is (its
/// monitor's gone or not).
pub(super) fn start(settings: &Settings, containers: &Containers, key: &str) -> anyhow::Result<()> {
    let record = containers.find(key)?;
    if record.status == Status::Running
        && (record.owner_alive() || runs(&settings.root, &record.runtime, &record.id))
    {
        return Ok(());
    }
    match launch(settings, &["start", &record.id], None)? {
        Launched::Started(_) => Ok(()),
        Launched::Failed(code) => Err(Reported(code).into()),
    }
}

/// Whether the runtime runs (or has paused) the container.
fn runs(root: &std::path::Path, runtime: &str, id: &str) -> bool {
    OciRuntime::find(runtime, root).is_ok_and(|oci| {
        matches!(
            oci.state(id),
            Ok(Some(RuntimeState::Running | RuntimeState::Paused))
        )
    })
}

/// Copy stdin to the container's (through its monitor), in the background.
fn attach_stdin(containers: &Containers, id: &str) {
    let dir = containers.dir_of(id).dir;
    std::thread::spawn(move || {
        let Ok(socket) = SocketPath::new(&dir, MONITOR_SOCKET) else {
            return;
        };
        let Ok(mut conn) = UnixStream::connect(&socket.path) else {
            return;
        };
        if conn.write_all(b"attach\n").is_ok() {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut conn);
        }
    });
}
