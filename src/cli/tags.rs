//! `manifold tags [--format json] REGISTRY/NAME`: a repository's tags, one per line, sorted.

use super::Settings;
use super::args::{ListFormat, TagsArgs};
use super::output::{print_json_lines, write_stdout};
use super::remote;
use crate::reference::Reference;

pub fn run(args: TagsArgs, settings: &Settings) -> anyhow::Result<()> {
    let reference = Reference::parse(&args.repository)?;
    let client = remote::client(settings)?;
    let mut tags = client.repository(&reference)?.list_tags()?;
    tags.sort();
    if args.format == ListFormat::Json {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Row<'a> {
            repository: String,
            tag: &'a str,
        }
        let rows: Vec<Row> = tags
            .iter()
            .map(|t| Row {
                repository: reference.name(),
                tag: t,
            })
            .collect();
        return print_json_lines(&rows);
    }
    let mut out = String::new();
    for t in &tags {
        out.push_str(t);
        out.push('\n');
    }
    write_stdout(out.as_bytes())?;
    Ok(())
}
