//! `cnn serve RUN_DIR|MODEL`: a live page for the model (see `cnn::serve`).

use std::path::PathBuf;

use clap::Args;
use cnn::serve::{Options, Server};

use super::{CmdResult, Failure};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cnn serve runs/report1-10                      (a run folder: model, curves, live while it trains)\n  \
    cnn serve runs/report1-10/model.safetensors --port 0\n  \
    cnn serve runs/fashion --data ../shared/data/fashion-mnist   (adds the confusion matrix)\n\n\
    The page is at the URL printed; Ctrl-C stops the server.")]
pub struct ServeArgs {
    /// A run folder written by `cnn train` (its newest model file is served and reloaded
    /// when training replaces it) or a model file.
    path: PathBuf,
    /// Address to listen on; the default keeps the page on this machine.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one (the URL printed says which).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// A dataset to evaluate the model on (its test split): confusion matrix and the
    /// images of each cell. Any form `cnn evaluate --data` takes.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Resize --data images whose size differs from the model's input.
    #[arg(long)]
    resize: bool,
    /// Also answer requests for this host name (repeatable). Without it the server answers
    /// only localhost, IP addresses and --host, so that no other site's page can reach it
    /// through a name of its own (DNS rebinding).
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_host: Vec<String>,
}

pub fn run(args: ServeArgs) -> CmdResult {
    let server = Server::bind(&Options {
        path: args.path.clone(),
        data: args.data,
        resize: args.resize,
        host: args.host,
        port: args.port,
        allow_hosts: args.allow_host,
    })?;
    // Tests and scripts read the URL from this line.
    println!("serving {} at {}", args.path.display(), server.url()?);
    println!("press Ctrl-C to stop");
    server.run_until_ctrl_c()?;
    Err(Failure::Interrupted("cnn serve: stopped by Ctrl-C".into()))
}
