//! The `cnn` command: train, evaluate and inspect convolutional networks from a config file.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
