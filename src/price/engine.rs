//! The price engine's one entry point: fetch a product page behind the SSRF guard, then
//! extract its price. `probe` and the watch loop both go through here, so what an
//! operator sees with `probe` is what the daemon does.

use std::sync::Arc;

use url::Url;

use crate::domain::Validators;
use crate::price::extract::{Extractor, Report};
use crate::price::fetch::{FetchConfig, FetchError, Fetched, Fetcher};
use crate::price::rules::{RuleError, Rules};

/// What one check of a product found.
// One short-lived value per fetch: boxing the report would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Check {
    /// HTTP 304: the page is as it was; nothing was parsed.
    Unchanged { validators: Validators },
    /// The page was read: a price or the reason there is none.
    Read {
        report: Report,
        /// Where the page was found, after redirects.
        final_url: Url,
        validators: Validators,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the extraction task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Rules(Vec<RuleError>),
}

impl EngineError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            EngineError::Fetch(e) => e.is_transient(),
            EngineError::Task(_) => true,
            EngineError::Rules(_) => false,
        }
    }
}

/// Fetcher plus extractor; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct PriceEngine {
    fetcher: Arc<Fetcher>,
    extractor: Arc<Extractor>,
}

impl PriceEngine {
    pub fn new(fetcher: Fetcher, extractor: Extractor) -> PriceEngine {
        PriceEngine {
            fetcher: Arc::new(fetcher),
            extractor: Arc::new(extractor),
        }
    }

    /// Builds the fetcher `fetch` describes and the extractor for `rules`.
    pub fn from_config(fetch: &FetchConfig, rules: Rules) -> Result<PriceEngine, EngineError> {
        Ok(PriceEngine::new(
            Fetcher::new(fetch)?,
            extractor_from_config(fetch, rules),
        ))
    }

    /// The fetcher alone: a catalogue search fetches JSON, which is no product page.
    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    /// Fetches `url` (conditionally, with `validators`) and extracts its price.
    pub async fn check(&self, url: &Url, validators: &Validators) -> Result<Check, EngineError> {
        let page = match self.fetcher.fetch(url, validators).await? {
            Fetched::NotModified { validators } => return Ok(Check::Unchanged { validators }),
            Fetched::Page(page) => page,
        };
        // Parsing a 5 MiB page takes tens of milliseconds: too long for a runtime worker.
        let extractor = Arc::clone(&self.extractor);
        let requested = url.clone();
        let body = page.body;
        let content_type = page.content_type;
        let report = tokio::task::spawn_blocking(move || {
            // The requested URL carries the user's intent (`?variant=`), which a
            // redirect to a canonical URL may drop.
            extractor.extract(&requested, &body, content_type.as_deref())
        })
        .await
        .map_err(EngineError::Task)?;
        Ok(Check::Read {
            report,
            final_url: page.final_url,
            validators: page.validators,
        })
    }
}

/// The extractor alone, for reading saved pages (`probe --html`): `rules`, and the page
/// size limit of `fetch`.
pub fn extractor_from_config(fetch: &FetchConfig, rules: Rules) -> Extractor {
    let max_bytes = usize::try_from(fetch.max_body).unwrap_or(usize::MAX);
    Extractor::new(rules, max_bytes)
}
