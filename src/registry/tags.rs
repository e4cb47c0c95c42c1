//! Listings: a repository's tags and a registry's catalog, both paginated with `n` and the
//! `Link: <…>; rel="next"` header.

use reqwest::Method;
use reqwest::header;
use serde::Deserialize;

use super::auth::CATALOG_SCOPE;
use super::error::RegistryError;
use super::medium::Repository;
use super::transport::{Request, Transport};

/// Entries asked for per page.
const PAGE: usize = 1000;
/// A bound on pages, so a registry that links in a circle does not keep us forever.
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

/// GET every page from `first`, collecting what `take` extracts from each body.
fn paginate(
    transport: &Transport,
    first: String,
    scopes: &[String],
    repository: Option<&str>,
    mut take: impl FnMut(&[u8]) -> Result<Vec<String>, String>,
) -> Result<Vec<String>, RegistryError> {
    let mut out = Vec::new();
    let mut target = Some(first);
    let mut pages = 0;
    while let Some(t) = target.take() {
        pages += 1;
        if pages > MAX_PAGES {
            break;
        }
        let mut req = Request::new(Method::GET, t.clone(), scopes);
        if let Some(r) = repository {
            req = req.repository(r);
        }
        let resp = transport.send(&req)?;
        target = resp
            .headers()
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(next_link);
        let body = resp.bytes().map_err(|source| RegistryError::Connect {
            registry: transport.registry().to_string(),
            source,
        })?;
        let items = take(&body).map_err(|why| RegistryError::Protocol {
            registry: transport.registry().to_string(),
            what: t,
            why,
        })?;
        if items.is_empty() {
            break;
        }
        out.extend(items);
    }
    Ok(out)
}

impl Repository {
    /// Every tag of the repository, in the registry's order.
    pub fn list_tags(&self) -> Result<Vec<String>, RegistryError> {
        let scopes = self.scopes_for_read();
        let first = format!("/v2/{}/tags/list?n={PAGE}", self.name);
        paginate(&self.transport, first, &scopes, Some(&self.name), |body| {
            serde_json::from_slice::<TagList>(body)
                .map(|l| l.tags.unwrap_or_default())
                .map_err(|e| e.to_string())
        })
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
    paginate(transport, first, &scopes, None, |body| {
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
