//! Listings: a repository's tags and a registry's catalog, both paginated with `n` and the
//! `Link: <…>; rel="next"` header.

use std::collections::HashMap;

use reqwest::Method;
use reqwest::header;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::auth::CATALOG_SCOPE;
use super::error::RegistryError;
use super::http::LISTING_PAGE_LIMIT;
use super::medium::Repository;
use super::transport::{Request, Transport};

/// Entries asked for per page.
const PAGE: usize = 1000;
/// A bound on pages (10 million entries at 1,000 a page), so that a registry that keeps linking
/// to new pages fails instead of keeping us forever.
const MAX_PAGES: usize = 10_000;

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

/// The next page's target from a `Link` header.
pub fn next_link(value: &str) -> Option<String> {
    for part in value.split(',') {
        let (url, params) = part.split_once(';')?;
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        if params.split(';').any(|p| {
            p.trim()
                .replace(' ', "")
                .eq_ignore_ascii_case("rel=\"next\"")
                || p.trim() == "rel=next"
        }) {
            return Some(url.to_string());
        }
    }
    None
}

/// GET every page from `first`, collecting what `take` extracts from each body. Pages that link
/// in a circle, repeat an earlier page, or go on past `MAX_PAGES` are an error, never a listing
/// with duplicates.
fn paginate(
    transport: &Transport,
    first: String,
    what: &str,
    scopes: &[String],
    repository: Option<&str>,
    mut take: impl FnMut(&[u8]) -> Result<Vec<String>, String>,
) -> Result<Vec<String>, RegistryError> {
    let protocol = |why: String| RegistryError::Protocol {
        registry: transport.registry().to_string(),
        what: what.to_string(),
        why,
    };
    let mut out = Vec::new();
    // Page numbers by URL and by the hash of their body.
    let mut urls: HashMap<String, usize> = HashMap::new();
    let mut bodies: HashMap<[u8; 32], usize> = HashMap::new();
    let mut target = first;
    for page in 1..=MAX_PAGES {
        let url = transport.url(&target)?.to_string();
        if let Some(earlier) = urls.insert(url.clone(), page) {
            return Err(protocol(format!(
                "page {} links back to `{url}`, which was page {earlier}",
                page - 1
            )));
        }
        let mut req = Request::new(Method::GET, url, scopes);
        if let Some(r) = repository {
            req = req.repository(r);
        }
        let resp = transport.send(&req)?;
        let next = resp
            .headers()
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let body = transport.read_body(resp, LISTING_PAGE_LIMIT, what)?;
        let items = take(&body).map_err(|why| protocol(format!("page {page}: {why}")))?;
        if items.is_empty() {
            return Ok(out);
        }
        if let Some(earlier) = bodies.insert(Sha256::digest(&body).into(), page) {
            return Err(protocol(format!("page {page} repeats page {earlier}")));
        }
        out.extend(items);
        match next {
            Some(n) => target = n,
            None => return Ok(out),
        }
    }
    Err(protocol(format!("it goes on past {MAX_PAGES} pages")))
}

impl Repository {
    /// Every tag of the repository, in the registry's order.
    pub fn list_tags(&self) -> Result<Vec<String>, RegistryError> {
        let scopes = self.scopes_for_read();
        let first = format!("/v2/{}/tags/list?n={PAGE}", self.name);
        let what = format!("the tag list of `{}`", self.name);
        paginate(
            &self.transport,
            first,
            &what,
            &scopes,
            Some(&self.name),
            |body| {
                serde_json::from_slice::<TagList>(body)
                    .map(|l| l.tags.unwrap_or_default())
                    .map_err(|e| e.to_string())
            },
        )
        .map_err(|e| {
            if e.is_not_found() {
                RegistryError::NotFound {
                    registry: self.transport.registry().to_string(),
                    what: self.name.clone(),
                }
            } else {
                e
            }
        })
    }
}

/// Every repository the registry lists in `/v2/_catalog`.
pub fn catalog(transport: &Transport) -> Result<Vec<String>, RegistryError> {
    let scopes = [CATALOG_SCOPE.to_string()];
    let first = format!("/v2/_catalog?n={PAGE}");
    paginate(transport, first, "the catalog", &scopes, None, |body| {
        serde_json::from_slice::<Catalog>(body)
            .map(|c| c.repositories.unwrap_or_default())
            .map_err(|e| e.to_string())
    })
    .map_err(|e| match e {
        RegistryError::Status(s)
            if matches!(s.status, 404 | 405 | 501) || s.has_code("UNSUPPORTED") =>
        {
            RegistryError::CatalogUnsupported {
                registry: transport.registry().to_string(),
            }
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        assert_eq!(
            next_link(r#"</v2/x/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/x/tags/list?n=2&last=b")
        );
        assert_eq!(
            next_link(r#"<https://r/v2/_catalog?last=a&n=1>; rel=next"#).as_deref(),
            Some("https://r/v2/_catalog?last=a&n=1")
        );
        assert_eq!(next_link(r#"</a>; rel="prev""#), None);
    }
}
