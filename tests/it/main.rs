//! The integration tests, linked as one binary (`cargo test --test it`): one module per area,
//! with the helpers they share in `common` and `report_common`.
//!
//! A test's name is its module path (`sync_kernel::a_set_destroyed_by_hand_is_recreated`), so
//! `cargo test --test it sync_kernel::` runs one area.

// First, so that its macros (`netns_or_skip!`) are in scope in every module below.
#[macro_use]
mod common;
mod report_common;

mod apiban;
mod asterisk_callid;
mod asterisk_corpus;
mod asterisk_inject;
mod asterisk_prop;
mod cli;
mod clock_jump;
mod corpus_ci;
mod crowdsec;
mod daemon;
mod deb;
mod feed_cache;
mod firewall_rules;
mod fuzz;
mod input_counts;
mod ipset_kernel;
mod journal;
mod kernel_faults;
mod kernlog_corpus;
mod kernlog_kernel;
mod kernlog_run;
mod metrics;
mod nat64;
mod nft_backend;
mod offence_spray;
mod protected;
mod report_abuseipdb;
mod report_commit;
mod report_prop;
mod report_sigkill;
mod report_sync;
mod restore;
mod snapshots;
mod source_faults;
mod state_faults;
mod state_files;
mod status;
mod sync_kernel;
mod systemd_units;
mod tail_rotation;
mod total_coverage;
mod wire_live;
mod wire_scan;
mod wire_tcp;
mod wire_tools;
