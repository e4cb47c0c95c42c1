//! `manifold history [--platform P] [--no-trunc] IMAGE`: one row per history entry, newest
//! first, empty layers included.

use serde::Serialize;

use super::Settings;
use super::args::{HistoryArgs, ListFormat};
use super::output::{Table, ago, human_size, outln, print_json_lines};
use crate::platform::Platform;
use crate::store::summary_created;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Row {
    #[serde(rename = "ID")]
    id: String,
    created_at: Option<String>,
    created_since: String,
    created_by: String,
    size: String,
    size_bytes: u64,
    comment: String,
}

pub fn run(args: HistoryArgs, settings: &Settings) -> anyhow::Result<()> {
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let store = settings.store()?;
    let found = store.lookup(&args.image)?;
    let desc = store.platform_manifest(&found.descriptor, platform.as_ref())?;
    let manifest = store.read_manifest(&desc.digest)?.value;
    let config = store.read_config(&manifest.config.digest)?.value;

    // Non-empty history entries map, in order, onto the manifest's layers.
    let mut layers = manifest.layers.iter();
    let mut rows: Vec<Row> = config
        .history
        .iter()
        .map(|h| {
            let size = if h.empty_layer.unwrap_or(false) {
                0
            } else {
                layers.next().map_or(0, |l| l.size)
            };
            let created = summary_created(h.created.as_deref());
            Row {
                id: "<missing>".into(),
                created_at: created.map(|t| t.to_rfc3339()),
                created_since: ago(created),
                created_by: h.created_by.clone().unwrap_or_default(),
                size: human_size(size),
                size_bytes: size,
                comment: h.comment.clone().unwrap_or_default(),
            }
        })
        .collect();
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top.id = if args.no_trunc {
            desc.digest.to_string()
        } else {
            desc.digest.short().to_string()
        };
    }
    if args.quiet {
        for r in &rows {
            outln!("{}", r.id)?;
        }
        return Ok(());
    }
    if args.format == ListFormat::Json {
        return print_json_lines(&rows);
    }
    let mut table = Table::new(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]);
    for r in rows {
        let created_by = if args.no_trunc {
            r.created_by
        } else {
            truncate(&r.created_by, 45)
        };
        table.row(vec![r.id, r.created_since, created_by, r.size, r.comment]);
    }
    table.print()?;
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}
