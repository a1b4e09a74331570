//! Helpers shared by integration tests (`mod common;` in each test file).

pub mod https;
pub mod netns;
pub mod run;
pub mod stub;
