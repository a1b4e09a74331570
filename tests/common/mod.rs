//! Helpers shared by integration tests (`mod common;` in each test file).

pub mod https;
pub mod lines;
pub mod netns;
pub mod rng;
pub mod run;
pub mod stub;
