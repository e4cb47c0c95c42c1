//! TEMPORARY STUB (replaced by the real module).
use serde::{Deserialize, Serialize};
#[derive(Debug, thiserror::Error)]
#[error("invalid platform `{0}`")]
pub struct PlatformError(String);
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub os_version: Option<String>,
    #[serde(
        rename = "os.features",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub os_features: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}
impl Platform {
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(PlatformError(s.into()));
        }
        Ok(Platform {
            os: parts[0].into(),
            architecture: parts[1].into(),
            variant: parts.get(2).map(|v| v.to_string()),
            os_version: None,
            os_features: None,
        })
    }
    pub fn host() -> Platform {
        Platform::parse("linux/amd64").unwrap()
    }
    pub fn host_target() -> Platform {
        Platform::host()
    }
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" || self.architecture == "unknown"
    }
    pub fn matcher(&self) -> Matcher {
        Matcher(self.clone())
    }
}
impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}
impl std::str::FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}
#[derive(Debug, Clone)]
pub struct Matcher(Platform);
impl Matcher {
    pub fn platform(&self) -> &Platform {
        &self.0
    }
    pub fn matches(&self, p: &Platform) -> bool {
        p.os == self.0.os && p.architecture == self.0.architecture
    }
    pub fn best<'a>(&self, c: impl IntoIterator<Item = &'a Platform>) -> Option<usize> {
        c.into_iter().position(|p| self.matches(p))
    }
}
