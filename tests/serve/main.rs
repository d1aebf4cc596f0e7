//! Tests of `cnn serve`: the server run as a process and asked over HTTP, and its page in a
//! headless browser.

// Helpers, from tests/common (its mod.rs says why each crate names the files it uses).
#[path = "../common/mod.rs"]
mod common;
#[path = "../common/models.rs"]
mod models;
#[path = "../common/server.rs"]
mod server;

mod hosts;
mod serve;
mod serve_browser;
