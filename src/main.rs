//! The `cnn` command: train, evaluate and inspect convolutional networks from a config file.

mod cli;

fn main() {
    // Rust ignores SIGPIPE, so printing into a closed pipe (`cnn predict ... | head`) would
    // panic in `println!`. Restore the default: the process ends quietly, like other tools.
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    std::process::exit(cli::main());
}
