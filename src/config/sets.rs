//! The kernel sets sipban owns (`sets:`): their names and caps, and what a set name may be.
//!
//! This module owns the naming rule, which the firewall relies on for its temporary sets. It
//! must never talk to the kernel.

use crate::net::Family;
use serde::{Deserialize, Serialize};

/// `backend:`: which kernel sets sipban fills and which rules drop their sources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// ipsets (`hash:net`), matched by iptables rules: the default, as before the option.
    #[default]
    Ipset,
    /// nftables sets in sipban's own table `inet sipban`, matched by its own chains.
    Nft,
    /// nft when the host's firewall is nftables and no iptables-legacy rule exists, else ipset
    /// (decided when a command runs, by the backend module, never here).
    Auto,
}

impl BackendChoice {
    pub fn label(self) -> &'static str {
        match self {
            BackendChoice::Ipset => "ipset",
            BackendChoice::Nft => "nft",
            BackendChoice::Auto => "auto",
        }
    }
}

/// The two sets' nftables names must differ too.
pub fn check_nft_names(sets: &SetsSettings) -> Result<(), String> {
    let (a, b) = (nft_set_name(&sets.v4.name), nft_set_name(&sets.v6.name));
    if a == b {
        return Err(format!(
            "v4 and v6 would have the same nftables name `{a}` (`-` becomes `_`)"
        ));
    }
    // Each set is two nft sets, `NAME` and `NAME_addr`, beside `sipban_mark`.
    let names = [
        a.clone(),
        format!("{a}_addr"),
        b.clone(),
        format!("{b}_addr"),
    ];
    for (i, n) in names.iter().enumerate() {
        if n == "sipban_mark" || names[i + 1..].contains(n) {
            return Err(format!(
                "the nftables sets of v4 (`{a}`, `{a}_addr`) and v6 (`{b}`, `{b}_addr`) \
                 must differ from each other and from `sipban_mark`"
            ));
        }
    }
    Ok(())
}

/// The nftables name of a set sipban owns: nft identifiers cannot hold `-` (and nft 1.0.6
/// does not accept quoted set names), so `-` becomes `_` (`sipban-v4` → `sipban_v4`).
pub fn nft_set_name(name: &str) -> String {
    let mut s = name.replace('-', "_");
    if s.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        s.insert(0, 's');
    }
    s
}

/// Longest set name the kernel accepts (`IPSET_MAXNAMELEN` is 32 with the NUL).
pub const MAX_NAME_LEN: usize = 31;
/// Suffix of the temporary set a rebuild fills before swapping it in.
pub const TMP_SUFFIX: &str = "-tmp";

#[derive(Clone, Debug, Serialize)]
pub struct SetsSettings {
    pub v4: SetSettings,
    pub v6: SetSettings,
}

impl SetsSettings {
    pub fn get(&self, family: Family) -> &SetSettings {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SetSettings {
    pub name: String,
    pub cap: u32,
}

/// Check a name for a set sipban owns: 1 to 27 bytes of letters, digits, `_`, `-` and `.`, not
/// starting with `-`. 27 leaves room for [`TMP_SUFFIX`] within the kernel's 31.
pub fn validate_set_name(name: &str) -> Result<(), String> {
    let limit = MAX_NAME_LEN - TMP_SUFFIX.len();
    if name.is_empty() {
        return Err("a set name cannot be empty".to_owned());
    }
    if name.len() > limit {
        return Err(format!(
            "set name {name:?} is {} bytes long; the kernel allows {MAX_NAME_LEN} and sipban \
             needs {} of them for the temporary {TMP_SUFFIX:?} set, so use at most {limit}",
            name.len(),
            TMP_SUFFIX.len()
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(format!(
            "set name {name:?} may only contain letters, digits, '_', '-' and '.'"
        ));
    }
    if name.starts_with('-') {
        return Err(format!("set name {name:?} cannot start with '-'"));
    }
    Ok(())
}
