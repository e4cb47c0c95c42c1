//! The top-level help: the commands grouped by topic, as docker and podman list them. clap has
//! no command groups, so the grouped list is rendered into the top-level help template from
//! [`GROUPS`] and each command's own summary (its doc comment); the tests keep [`GROUPS`] and
//! the commands in step.

use std::fmt::Write as _;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches};

use super::args::Cli;

/// The topics of the top-level help, in order, and their commands in the order they are listed.
/// Every visible subcommand is in exactly one group (tested).
pub const GROUPS: &[(&str, &[&str])] = &[
    (
        "Images",
        &[
            "images", "inspect", "history", "tag", "rmi", "prune", "save", "load", "import",
            "verify", "sign",
        ],
    ),
    (
        "Containers",
        &[
            "run", "ps", "logs", "exec", "start", "stop", "restart", "kill", "wait", "port", "top",
            "rm", "commit",
        ],
    ),
    (
        "Registries",
        &["pull", "push", "copy", "login", "logout", "tags", "search"],
    ),
    ("Build and manifest lists", &["build", "bake", "manifest"]),
    ("Emulation", &["binfmt", "platforms"]),
    ("Other", &["system", "unshare", "completions", "help"]),
];

/// The command line, parsed. Listing the commands needs the whole tree of commands built (for
/// the `help` subcommand clap adds), which a run does not otherwise pay for: the grouped help is
/// made only when help is shown.
pub fn parse() -> Cli {
    let mut matches = match plain().try_get_matches() {
        Ok(m) => m,
        Err(e)
            if e.kind() == ErrorKind::DisplayHelp
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            command().get_matches()
        }
        Err(e) => e.exit(),
    };
    Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.format(&mut command()).exit())
}

/// [`Cli`] with help no wider than 100 columns.
fn plain() -> clap::Command {
    Cli::command().max_term_width(100)
}

/// The command line as `manifold` shows it: [`Cli`] with the grouped top-level help.
pub fn command() -> clap::Command {
    let mut cmd = plain();
    cmd.build();
    let listing = grouped_listing(&cmd);
    let header = cmd.get_styles().get_header();
    let template = format!(
        "{{before-help}}{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{listing}\n\
         {header}Options:{header:#}\n{{options}}{{after-help}}"
    );
    cmd.help_template(template)
}

/// One line per command under its group's heading, names in one column.
fn grouped_listing(built: &clap::Command) -> String {
    let styles = built.get_styles();
    let (header, literal) = (styles.get_header(), styles.get_literal());
    let width = name_width();
    let mut out = String::new();
    for (group, names) in GROUPS {
        if !out.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(out, "{header}{group}:{header:#}");
        for name in *names {
            let Some(sub) = built.find_subcommand(name).filter(|s| !s.is_hide_set()) else {
                continue;
            };
            let _ = writeln!(
                out,
                "  {literal}{name:<width$}{literal:#}  {}",
                summary(sub)
            );
        }
    }
    out
}

/// The width of the name column: the longest name in [`GROUPS`].
fn name_width() -> usize {
    GROUPS
        .iter()
        .flat_map(|(_, names)| names.iter())
        .map(|n| n.len())
        .max()
        .unwrap_or(0)
}

/// A command's summary as clap shows it in a listing, aliases included.
fn summary(sub: &clap::Command) -> String {
    let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
    let aliases: Vec<&str> = sub.get_visible_aliases().collect();
    match aliases.as_slice() {
        [] => about,
        [one] => format!("{about} [alias: {one}]"),
        many => format!("{about} [aliases: {}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// The widest a line of the grouped list may be: the listing is not wrapped (as in docker
    /// and podman), so each summary fits an 80-column terminal.
    const LISTING_WIDTH: usize = 80;

    fn built() -> clap::Command {
        let mut cmd = command();
        cmd.build();
        cmd
    }

    #[test]
    fn every_command_is_in_exactly_one_group() {
        let cmd = built();
        let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (group, names) in GROUPS {
            assert!(!names.is_empty(), "group `{group}` is empty");
            for name in *names {
                seen.entry(name).or_default().push(group);
            }
        }
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = sub.get_name();
            match seen.remove(name).as_deref() {
                Some([_]) => {}
                Some(groups) => panic!("`{name}` is in several groups: {groups:?}"),
                None => panic!("`{name}` is in no group of cli::help::GROUPS: add it to one"),
            }
        }
        assert!(
            seen.is_empty(),
            "GROUPS lists commands that do not exist (or are hidden): {:?}",
            seen.keys().collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_top_level_help_lists_every_command_under_its_group() {
        let help = command().render_help().to_string();
        assert!(
            !help.contains("Commands:"),
            "clap's own list is left out:\n{help}"
        );
        let mut at = 0;
        for (group, names) in GROUPS {
            let heading = format!("\n{group}:\n");
            at += help[at..]
                .find(&heading)
                .unwrap_or_else(|| panic!("no heading `{group}:` in order in\n{help}"));
            for name in *names {
                let line = format!("\n  {name} ");
                at += help[at..]
                    .find(&line)
                    .unwrap_or_else(|| panic!("`{name}` is not listed under `{group}`:\n{help}"));
            }
        }
        assert!(
            help[at..].contains("\nOptions:\n      --root <DIR>"),
            "{help}"
        );
    }

    /// A command without a summary of its own gets the doc comment of a flattened struct (that
    /// is how `build` came to say "How many blobs move at once"), and two doc comments written
    /// one after the other merge into one summary: each top-level summary fits one line of the
    /// listing, is unique, and has no trailing period.
    #[test]
    fn summaries_are_one_line_and_their_own() {
        let cmd = built();
        let indent = 2 + name_width() + 2;
        let mut abouts = BTreeMap::new();
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = sub.get_name();
            let line = summary(sub);
            assert!(!line.is_empty(), "`{name}` has no summary");
            assert!(
                !line.ends_with('.'),
                "`{name}`: {line:?} ends with a period"
            );
            assert!(
                indent + line.chars().count() <= LISTING_WIDTH,
                "`{name}`'s summary is too long for the listing ({} columns): {line:?}",
                indent + line.chars().count()
            );
            if let Some(other) = abouts.insert(line.clone(), name) {
                panic!("`{name}` and `{other}` have the same summary: {line:?}");
            }
        }
    }

    /// The structs flattened into commands carry no doc comment of their own: it would become
    /// the summary of each command that has none.
    #[test]
    fn flattened_structs_carry_no_summary() {
        use clap::Args as _;
        let probe = || clap::Command::new("probe");
        for (name, cmd) in [
            (
                "GlobalArgs",
                super::super::args::GlobalArgs::augment_args(probe()),
            ),
            (
                "TransferArgs",
                super::super::args::TransferArgs::augment_args(probe()),
            ),
        ] {
            assert_eq!(cmd.get_about(), None, "{name} has a doc comment");
        }
    }

    #[test]
    fn every_command_and_subcommand_has_a_summary() {
        fn walk(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let path = format!("{path} {}", sub.get_name());
                let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
                assert!(!about.is_empty(), "`{path}` has no summary");
                assert!(
                    !about.ends_with('.'),
                    "`{path}`: {about:?} ends with a period"
                );
                walk(sub, &path);
            }
        }
        walk(&built(), "manifold");
    }
}
