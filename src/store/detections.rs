//! The real-time pass's write: detections merged into `entries` and the detectors' cursors,
//! in one transaction.

use super::Store;
use crate::net;
use anyhow::{Context, Result};
use ipnet::IpNet;
use rusqlite::params;

/// One detection to merge into the stored marks.
#[derive(Clone, Copy, Debug)]
pub struct Detection<'a> {
    pub source: &'a str,
    pub net: IpNet,
    pub seen: i64,
    pub expires: i64,
}

impl Store {
    /// Merge detections into their marks (as decide merges them: the earliest `first_seen`,
    /// the latest `last_seen` and `expires`) and write the detectors' state blobs, in one
    /// transaction.
    pub fn save_detections(
        &mut self,
        detections: &[Detection<'_>],
        blobs: &[(&str, Vec<u8>)],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut up = tx.prepare(
                "INSERT INTO entries (net, source, first_seen, last_seen, expires)
                 VALUES (?1, ?2, ?3, ?3, ?4)
                 ON CONFLICT(net, source) DO UPDATE SET
                   first_seen = MIN(first_seen, ?3), last_seen = MAX(last_seen, ?3),
                   expires = MAX(expires, ?4)",
            )?;
            for d in detections {
                up.execute(params![
                    net::display_net(&d.net),
                    d.source,
                    d.seen,
                    d.expires
                ])?;
            }
            for (key, blob) in blobs {
                tx.execute(
                    "INSERT INTO blobs (key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = ?2",
                    params![key, blob],
                )?;
            }
        }
        tx.commit().context("saving detections")
    }
}
