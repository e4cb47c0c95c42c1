//! `manifold login [-u USER] [-p PASS | --password-stdin] [REGISTRY]`: check the credentials
//! against the registry, then store them where docker would (config.json or its helper).

use std::io::{BufRead, IsTerminal, Read, Write};

use rustix::fd::AsFd;
use rustix::termios::{self, LocalModes, OptionalActions, Termios};

use super::Settings;
use super::args::LoginArgs;
use super::errors::user_error;
use super::remote;
use crate::reference::DEFAULT_REGISTRY;
use crate::registry::{Credentials, credentials};

/// The registry a login/logout argument names: `host[:port]`, a URL's host, Docker Hub by
/// default.
pub fn registry_name(arg: Option<&str>) -> anyhow::Result<String> {
    let Some(arg) = arg else {
        return Ok(DEFAULT_REGISTRY.to_string());
    };
    let host = arg
        .strip_prefix("https://")
        .or_else(|| arg.strip_prefix("http://"))
        .unwrap_or(arg);
    let host = host.split('/').next().unwrap_or(host);
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(user_error(
            format!("`{arg}` is not a registry name"),
            Some("give `host[:port]`, e.g. `registry.example:5000`"),
        ));
    }
    Ok(match host {
        "index.docker.io" | "registry-1.docker.io" => DEFAULT_REGISTRY.to_string(),
        h => h.to_string(),
    })
}

pub fn run(args: LoginArgs, settings: &Settings) -> anyhow::Result<()> {
    let registry = registry_name(args.registry.as_deref())?;
    let terminal = std::io::stdin().is_terminal();
    let username = match args.username {
        Some(u) => u,
        None if terminal && !args.password_stdin => prompt("Username: ", true)?,
        None => {
            return Err(user_error("no user name given", Some("pass `-u USER`")));
        }
    };
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin().lock().read_to_string(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = args.password {
        eprintln!(
            "warning: a password on the command line is visible to other users; prefer `--password-stdin`"
        );
        p
    } else if terminal {
        prompt("Password: ", false)?
    } else {
        return Err(user_error(
            "no password given",
            Some("pipe it in with `--password-stdin`"),
        ));
    };
    if username.is_empty() || password.is_empty() {
        return Err(user_error(
            "the user name and the password must not be empty",
            None,
        ));
    }
    let client = remote::client(settings)?;
    let verified = client.login(&registry, Credentials::Basic { username, password })?;
    let place = credentials::store(&registry, &verified)?;
    eprintln!("Credentials for `{registry}` stored in {place}");
    eprintln!("Login Succeeded");
    Ok(())
}

/// Ask on the terminal (stderr), with echo off for passwords.
fn prompt(label: &str, echo: bool) -> anyhow::Result<String> {
    eprint!("{label}");
    std::io::stderr().flush()?;
    let restore = if echo {
        None
    } else {
        EchoOff::new(std::io::stdin())
    };
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    drop(restore);
    if !echo {
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Terminal echo switched off until dropped.
struct EchoOff<T: AsFd> {
    terminal: T,
    saved: Termios,
}

impl<T: AsFd> EchoOff<T> {
    /// None when `terminal` is no terminal.
    fn new(terminal: T) -> Option<EchoOff<T>> {
        let saved = termios::tcgetattr(&terminal).ok()?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        // The newline the user types still shows, so the next message starts on a line of its own.
        quiet.local_modes.insert(LocalModes::ECHONL);
        termios::tcsetattr(&terminal, OptionalActions::Now, &quiet).ok()?;
        Some(EchoOff { terminal, saved })
    }
}

impl<T: AsFd> Drop for EchoOff<T> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(&self.terminal, OptionalActions::Now, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};

    #[test]
    fn echo_is_off_while_asked_and_restored_after() {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let terminal = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        let modes = || termios::tcgetattr(&terminal).unwrap().local_modes;
        assert!(modes().contains(LocalModes::ECHO));
        let off = EchoOff::new(&terminal).unwrap();
        assert!(!modes().contains(LocalModes::ECHO));
        assert!(modes().contains(LocalModes::ECHONL));
        drop(off);
        assert!(modes().contains(LocalModes::ECHO));
        assert!(!modes().contains(LocalModes::ECHONL));
        // Not a terminal: nothing to switch off.
        assert!(EchoOff::new(std::fs::File::open("/dev/null").unwrap()).is_none());
    }
}
