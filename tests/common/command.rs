//! The `cnn` command driven in more ways than [`crate::common::run`].

/// `cnn` as an `assert_cmd` command, for tests that chain `.arg(..).assert()`.
pub fn cnn() -> assert_cmd::Command {
    assert_cmd::Command::new(crate::common::BIN)
}
