//! What the daemon's wire inputs keep across a restart, as one blob in the state: the Call-ID
//! map (so that a `Timeout on <Call-ID>` written after a restart is still attributed to the
//! INVITE seen before it) and the input counters, for `status` and the metrics.
//!
//! This module owns the blob's format only. It must never read or write the state itself (the
//! daemon saves, `status` reads) and never hold anything the Call-ID map does not already
//! bound: no SIP bodies, no credentials.

use crate::source::asterisk::callid::CallIdMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The blob's key in the state.
pub const KEY: &str = "sip_wire";

/// The saved form.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SavedWire {
    /// When it was saved (Unix seconds).
    pub saved: i64,
    /// When the daemon's wire inputs were opened: the counters run from then.
    pub since: i64,
    /// Input counters by name (`hep`, `non_peer`, `captured`, ...).
    pub counters: BTreeMap<String, u64>,
    /// Call-IDs the map holds.
    #[serde(default)]
    pub callids_held: u64,
    /// The map itself (bounded and pruned by age, see `asterisk::callid`).
    #[serde(default)]
    pub callids: CallIdMap,
}

impl SavedWire {
    pub fn encode(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }

    pub fn decode(blob: &[u8]) -> serde_json::Result<SavedWire> {
        serde_json::from_slice(blob)
    }
}
