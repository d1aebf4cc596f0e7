//! Tests of `cnn serve`: the server run as a process and asked over HTTP, and its page in a
//! headless browser.

#[path = "../serve_common/mod.rs"]
mod serve_common;

mod serve;
mod serve_browser;
