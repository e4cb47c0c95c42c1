//! `manifold images`: docker's listing, plus the platforms each image holds.

use serde::Serialize;

use super::Settings;
use super::args::{ImagesArgs, ListFormat};
use super::errors::user_error;
use super::output::{Table, ago, human_size, outln, print_json_lines};
use crate::oci::Descriptor;
use crate::reference::Reference;
use crate::store::{ImageSummary, Store};

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Row {
    repository: String,
    tag: String,
    digest: String,
    #[serde(rename = "ID")]
    id: String,
    created_at: Option<String>,
    created_since: String,
    size: String,
    #[serde(rename = "SizeBytes")]
    size_bytes: u64,
    platforms: Vec<String>,
    /// A multi-platform image whose platforms are only partly in the store.
    sparse: bool,
    #[serde(skip)]
    created_sort: i64,
    #[serde(skip)]
    label: String,
    #[serde(skip)]
    dangling: bool,
    #[serde(skip)]
    familiar: Vec<String>,
}

struct Filters {
    dangling: Option<bool>,
    references: Vec<glob::Pattern>,
}

impl Filters {
    fn parse(args: &ImagesArgs) -> anyhow::Result<Filters> {
        let mut f = Filters {
            dangling: None,
            references: Vec::new(),
        };
        let mut add_reference = |pat: &str| -> anyhow::Result<()> {
            let p = glob::Pattern::new(pat)
                .map_err(|e| user_error(format!("invalid reference filter `{pat}`: {e}"), None))?;
            f.references.push(p);
            Ok(())
        };
        if let Some(repo) = &args.repository {
            add_reference(repo)?;
        }
        for filter in &args.filter {
            let (key, value) = filter.split_once('=').ok_or_else(|| {
                user_error(
                    format!("invalid filter `{filter}`: expected KEY=VALUE"),
                    Some("filters are `dangling=true|false` and `reference=PATTERN`"),
                )
            })?;
            match key {
                "dangling" => {
                    f.dangling = Some(match value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(user_error(
                                format!("invalid filter `{filter}`: dangling takes true or false"),
                                None,
                            ));
                        }
                    })
                }
                "reference" => add_reference(value)?,
                _ => {
                    return Err(user_error(
                        format!("unknown filter `{key}`"),
                        Some("filters are `dangling=true|false` and `reference=PATTERN`"),
                    ));
                }
            }
        }
        Ok(f)
    }

    fn keep(&self, row: &Row) -> bool {
        if self.dangling.is_some_and(|d| d != row.dangling) {
            return false;
        }
        let opts = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        self.references.is_empty()
            || self
                .references
                .iter()
                .any(|p| row.familiar.iter().any(|name| p.matches_with(name, opts)))
    }
}

pub fn run(args: ImagesArgs, settings: &Settings) -> anyhow::Result<()> {
    let filters = Filters::parse(&args)?;
    let store = settings.store()?;
    let mut rows = Vec::new();
    for entry in store.entries()? {
        let summary = store.summarize(&entry.descriptor)?;
        rows.push(row(&entry.reference, &summary, &args));
        if args.all && summary.is_index() {
            for child in summary.platforms.iter().filter(|p| p.present) {
                rows.push(child_row(
                    &store,
                    &entry.reference,
                    &child.descriptor,
                    &args,
                )?);
            }
        }
    }
    rows.retain(|r| filters.keep(r));
    rows.sort_by(|a, b| {
        b.created_sort
            .cmp(&a.created_sort)
            .then_with(|| a.label.cmp(&b.label))
    });

    if args.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in rows.iter().filter(|r| seen.insert(r.id.clone())) {
            outln!("{}", r.id)?;
        }
        return Ok(());
    }
    if args.format == ListFormat::Json {
        return print_json_lines(&rows);
    }
    let mut header = vec!["REPOSITORY", "TAG"];
    if args.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "CREATED", "SIZE", "PLATFORMS"]);
    let mut table = Table::new(&header);
    for r in rows {
        let mut cells = vec![r.repository, r.tag];
        if args.digests {
            cells.push(r.digest);
        }
        cells.extend([r.id, r.created_since, r.size, r.label]);
        table.row(cells);
    }
    table.print()?;
    Ok(())
}

fn id(desc: &Descriptor, args: &ImagesArgs) -> String {
    if args.no_trunc {
        desc.digest.to_string()
    } else {
        desc.digest.short().to_string()
    }
}

fn row(reference: &Option<Reference>, s: &ImageSummary, args: &ImagesArgs) -> Row {
    let (repository, tag) = match reference {
        Some(r) => (r.familiar_name(), r.tag().unwrap_or("<none>").to_string()),
        None => ("<none>".to_string(), "<none>".to_string()),
    };
    let familiar = match reference {
        Some(r) => vec![r.familiar_name(), r.familiar()],
        None => Vec::new(),
    };
    Row {
        label: s.platforms_label(),
        repository,
        tag,
        digest: s.descriptor.digest.to_string(),
        id: id(&s.descriptor, args),
        created_at: s.created.map(|t| t.to_rfc3339()),
        created_since: ago(s.created),
        size: human_size(s.size),
        size_bytes: s.size,
        platforms: s
            .platforms
            .iter()
            .filter(|p| p.present)
            .filter_map(|p| p.platform.as_ref().map(ToString::to_string))
            .collect(),
        sparse: s.is_sparse(),
        created_sort: s.created.map_or(i64::MIN, |t| t.timestamp()),
        dangling: reference.is_none(),
        familiar,
    }
}

/// `-a`: one platform's image inside a multi-platform image, shown under the parent's name.
fn child_row(
    store: &Store,
    parent: &Option<Reference>,
    child: &Descriptor,
    args: &ImagesArgs,
) -> anyhow::Result<Row> {
    let mut s = store.summarize(child)?;
    // The index entry's platform is authoritative for a child.
    if let (Some(p), Some(entry)) = (&child.platform, s.platforms.first_mut()) {
        entry.platform = Some(p.clone());
    }
    let mut r = row(parent, &s, args);
    r.tag = "<none>".into();
    r.dangling = parent.is_none();
    Ok(r)
}
