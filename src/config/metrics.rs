//! The resolved `metrics:` section: where the node_exporter textfile goes.
//!
//! This module must never write a metric: `metrics` does that after each run.

use super::raw::RawMetrics;
use serde::Serialize;
use std::path::PathBuf;

/// Resolved `metrics:`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MetricsSettings {
    pub textfile: Option<PathBuf>,
}

/// Apply defaults and validate the `metrics:` section.
pub fn resolve(raw: Option<RawMetrics>) -> Result<MetricsSettings, String> {
    let raw = raw.unwrap_or_default();
    if let Some(p) = &raw.textfile {
        if !p.is_absolute() {
            return Err(format!(
                "textfile `{}` must be an absolute path",
                p.display()
            ));
        }
        if p.extension().is_none_or(|e| e != "prom") {
            return Err(format!(
                "textfile `{}` must end in .prom (node_exporter reads only those)",
                p.display()
            ));
        }
    }
    Ok(MetricsSettings {
        textfile: raw.textfile,
    })
}
