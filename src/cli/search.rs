//! `manifold search [--limit N] [--format json] REGISTRY/TERM`: the repositories of a registry's
//! catalog whose name contains TERM (case-insensitive).

use super::Settings;
use super::args::{ListFormat, SearchArgs};
use super::errors::user_error;
use super::output::{Table, print_json_lines};
use super::remote;

pub fn run(args: SearchArgs, settings: &Settings) -> anyhow::Result<()> {
    let (registry, term) = args.query.split_once('/').unwrap_or((&args.query, ""));
    if registry.is_empty() || !(registry.contains(['.', ':']) || registry == "localhost") {
        return Err(user_error(
            format!("`{}` does not start with a registry", args.query),
            Some("search takes REGISTRY/TERM, e.g. `manifold search registry.example:5000/alpine`"),
        ));
    }
    let client = remote::client(settings)?;
    let term = term.to_lowercase();
    let mut names: Vec<String> = client
        .catalog(registry)?
        .into_iter()
        .filter(|r| r.to_lowercase().contains(&term))
        .collect();
    if let Some(limit) = args.limit {
        names.truncate(limit);
    }
    if args.format == ListFormat::Json {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Row {
            name: String,
            repository: String,
        }
        let rows: Vec<Row> = names
            .iter()
            .map(|n| Row {
                name: format!("{registry}/{n}"),
                repository: n.clone(),
            })
            .collect();
        return print_json_lines(&rows);
    }
    let mut table = Table::new(&["NAME"]);
    for n in names {
        table.row(vec![format!("{registry}/{n}")]);
    }
    table.print()?;
    Ok(())
}
