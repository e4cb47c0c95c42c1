//! Output helpers shared by the listings: docker's human sizes and durations, aligned tables,
//! JSON lines.

use std::io::Write;

use chrono::{DateTime, Utc};

/// docker's `units.HumanSize`: decimal units, four significant digits ("4.194MB", "123kB").
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    format!("{}{}", format_g4(size), UNITS[unit])
}

/// Go's `%.4g` for the values human_size produces (0 ≤ v < 1000).
fn format_g4(v: f64) -> String {
    let digits_before = if v < 1.0 {
        1
    } else {
        (v.log10().floor() as i32 + 1).max(1)
    };
    let decimals = (4 - digits_before).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// docker's `units.HumanDuration` + " ago" ("2 days ago", "About an hour ago").
pub fn ago(t: Option<DateTime<Utc>>) -> String {
    let Some(t) = t else {
        return "N/A".into();
    };
    let secs = (Utc::now() - t).num_seconds();
    if secs < 0 {
        return "Less than a second from now".into();
    }
    let plural = |n: i64, unit: &str| format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" });
    let mins = secs / 60;
    let hours = mins / 60;
    let days = hours / 24;
    match () {
        _ if secs < 1 => "Less than a second ago".into(),
        _ if secs == 1 => "1 second ago".into(),
        _ if secs < 60 => format!("{secs} seconds ago"),
        _ if mins == 1 => "About a minute ago".into(),
        _ if mins < 60 => format!("{mins} minutes ago"),
        _ if hours == 1 => "About an hour ago".into(),
        _ if hours < 48 => format!("{hours} hours ago"),
        _ if hours < 24 * 7 * 2 => plural(days, "day"),
        _ if hours < 24 * 30 * 2 => plural(days / 7, "week"),
        _ if hours < 24 * 365 * 2 => plural(days / 30, "month"),
        _ => plural(days / 365, "year"),
    }
}

/// An aligned table like docker's (columns padded, three spaces apart), written to stdout.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) -> std::io::Result<()> {
        std::io::stdout().write_all(self.render().as_bytes())
    }
}

/// Print one JSON document per line (docker's `--format json`).
pub fn print_json_lines<T: serde::Serialize>(items: &[T]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for item in items {
        serde_json::to_writer(&mut out, item)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Print one pretty JSON document.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(4_194_304), "4.194MB");
        assert_eq!(human_size(123_000), "123kB");
    }

    #[test]
    fn durations_like_docker() {
        let now = Utc::now();
        assert_eq!(
            ago(Some(now - chrono::Duration::seconds(30))),
            "30 seconds ago"
        );
        assert_eq!(
            ago(Some(now - chrono::Duration::minutes(61))),
            "About an hour ago"
        );
        assert_eq!(ago(Some(now - chrono::Duration::days(3))), "3 days ago");
        assert_eq!(ago(Some(now - chrono::Duration::days(21))), "3 weeks ago");
        assert_eq!(ago(None), "N/A");
    }

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["A", "BB"]);
        t.row(vec!["xxx".into(), "y".into()]);
        assert_eq!(t.render(), "A     BB\nxxx   y\n");
    }
}
