//! Helpers shared by the integration tests (`use crate::common::…` in each module).

pub mod corpus;
pub mod https;
pub mod lapi;
pub mod lines;
pub mod lock;
#[macro_use] // `netns_or_skip!`, for every test module (see main.rs)
pub mod netns;
pub mod prop;
pub mod rng;
pub mod run;
pub mod stub;
